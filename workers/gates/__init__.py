"""The gates every run passes through, Celery-free: target resolution, the maintenance
window, the per-target lock, and deferral (``pipeline``); the locks themselves (``locks``).

The Celery layer (``workers.taskdef``) builds the ``RunContext``, calls ``run_gated`` and
records the outcome; nothing here knows about messages, retries or workers.
"""
