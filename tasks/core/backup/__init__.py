"""Backups that are proven to restore: Celery-free code behind ``tasks/backup.py``.

A backup streams into a ``BackupStore`` (``local``/``s3``) under
``<prefix>/<kind>/<target>/<YYYY>/<MM>/<DD>/<backup_id>/``: data object(s), then
``manifest.json`` written last. Only a backup whose manifest says ``complete`` exists
for verification, restore and retention. ``verification.json`` next to it records
checksum, format and restore-test results so they are not redone.
"""
