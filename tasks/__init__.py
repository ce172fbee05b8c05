"""The maintd task catalog. Import a module to use its tasks from a shell::

    from tasks import health
    health.postgres.delay("main").get(timeout=30)
"""
