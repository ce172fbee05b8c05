"""SQLite upkeep: full integrity checks (``integrity``) and optimisation (``optimize``)."""
