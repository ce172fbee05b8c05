"""Host hygiene: temporary-file cleanup (``clean_tmp``) and permission audits (``audit``)."""
