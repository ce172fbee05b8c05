"""maintd maintaining itself (Celery-free): releasing deferred runs and closing runs whose
host is gone (``release``), pruning its own history and Celery's result rows (``history``)."""
