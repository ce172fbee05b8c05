"""Host file upkeep (Celery-free): log rotation (``rotate``), its compression (``compress``),
the lossless copytruncate (``cut``), the logrotate stanza importer (``logrotate_import``),
temporary-file cleanup (``clean_tmp``) and permission audits (``audit``)."""
