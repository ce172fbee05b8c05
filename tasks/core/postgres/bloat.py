"""Bloat: which tables need VACUUM, which need a rewrite, which indexes need a rebuild.

Pure functions over numbers read from the catalog, tested with tables of cases.

- Dead tuples (``vacuum_bloated``): the runbooks' rule, ``n_dead_tup`` above a count
  *and* ``n_dead_tup / max(n_live_tup, 1)`` above a ratio (defaults 1000 and 10%).
- Estimated bloat (``vacuum_full``, ``reindex``): the size the live rows would need,
  from ``reltuples``, the average row width in ``pg_stats`` and the fillfactor,
  against the relation's real size (the estimate the well-known ioguix queries make,
  simplified). Without statistics a table falls back to its dead-tuple share; an
  index without them is not estimated at all (never rebuilt on a guess).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PAGE = 8192
PAGE_HEADER = 24
HEAP_TUPLE_OVERHEAD = 24 + 4  # MAXALIGN'd tuple header + line pointer
BTREE_TUPLE_OVERHEAD = 8 + 4  # IndexTupleData + line pointer
BTREE_PAGE_SPECIAL = 16


@dataclass(frozen=True)
class DeadTuples:
    """One row of ``pg_stat_user_tables``."""

    schema: str
    name: str
    live: int
    dead: int

    @property
    def ratio(self) -> float:
        return self.dead / max(self.live, 1)


def needs_vacuum(t: DeadTuples, min_dead: int, min_ratio: float) -> bool:
    return t.dead > min_dead and t.ratio > min_ratio


def select_for_vacuum(tables: list[DeadTuples], min_dead: int, min_ratio: float) -> list[DeadTuples]:
    """Tables over both thresholds, most bloated (highest dead ratio, then most dead) first."""
    chosen = [t for t in tables if needs_vacuum(t, min_dead, min_ratio)]
    return sorted(chosen, key=lambda t: (-t.ratio, -t.dead, t.schema, t.name))


@dataclass(frozen=True)
class Space:
    """A relation's real size and what its live content would need."""

    size_bytes: int
    bloat_bytes: int
    estimated: bool  # False: no statistics, the figure is a fallback or zero

    @property
    def ratio(self) -> float:
        return self.bloat_bytes / self.size_bytes if self.size_bytes else 0.0


def maxalign(n: float) -> float:
    return math.ceil(n / 8) * 8


def table_space(size_bytes: int, reltuples: float, row_width: float | None, fillfactor: int = 100,
                live: int = 0, dead: int = 0) -> Space:
    """Estimated bloat of a heap: real size minus the pages the live rows need."""
    if row_width is None or reltuples < 0:
        share = dead / (live + dead) if live + dead else 0.0
        return Space(size_bytes, int(size_bytes * share), False)
    per_page = (PAGE - PAGE_HEADER) * fillfactor / 100
    tuple_bytes = maxalign(HEAP_TUPLE_OVERHEAD + row_width)
    pages = math.ceil(reltuples * tuple_bytes / per_page) if reltuples > 0 else 0
    return Space(size_bytes, max(0, size_bytes - pages * PAGE), True)


def btree_space(size_bytes: int, reltuples: float, key_width: float | None, fillfactor: int = 90) -> Space:
    """Estimated bloat of a btree index: real size minus leaf pages at the fillfactor, the
    metapage and ~1% internal pages. ``key_width`` None (expressions, no stats): not estimated."""
    if key_width is None or reltuples < 0:
        return Space(size_bytes, 0, False)
    per_page = (PAGE - PAGE_HEADER - BTREE_PAGE_SPECIAL) * fillfactor / 100
    tuple_bytes = BTREE_TUPLE_OVERHEAD + maxalign(key_width)
    leaves = math.ceil(reltuples * tuple_bytes / per_page) if reltuples > 0 else 1
    pages = 1 + leaves + math.ceil(leaves / 100)
    return Space(size_bytes, max(0, size_bytes - pages * PAGE), True)


def over(space: Space, min_ratio: float, min_bytes: int) -> bool:
    """Worth a rewrite: at least ``min_bytes`` big and ``min_ratio`` of it bloat."""
    return space.size_bytes >= min_bytes and space.ratio >= min_ratio
