"""PostgreSQL maintenance, free of Celery: each module does one thing its name says.

``tasks.postgres`` wraps these in thin Celery tasks. Every function here takes the
``RunContext`` of its run and a typed ``PostgresTarget`` and returns a ``Result``.
"""
