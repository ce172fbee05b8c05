"""maintd runtime: Celery app, config, routing, gates, history, CLI."""
