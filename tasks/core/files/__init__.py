"""Host file upkeep (Celery-free): log rotation (``rotate``), its compression (``compress``),
the lossless copytruncate (``cut``) and the logrotate stanza importer (``logrotate_import``)."""
