"""``[store] compression_tuning``: zstd's advanced parameters for backups."""

from __future__ import annotations

from pydantic import Field

from workers.config.types import Strict


class ZstdTuning(Strict):
    """zstd's advanced parameters over ``compression_level`` (unset: the level's own). ``bench/backup.py
    --tuning`` measures them; a window over 2^27 would need ``zstd -d --long``, so it is refused."""

    window_log: int | None = Field(default=None, ge=10, le=27)
    chain_log: int | None = Field(default=None, ge=6, le=29)
    hash_log: int | None = Field(default=None, ge=6, le=29)
    search_log: int | None = Field(default=None, ge=1, le=29)
    min_match: int | None = Field(default=None, ge=3, le=7)
    target_length: int | None = Field(default=None, ge=0, le=131072)
    strategy: int | None = Field(default=None, ge=1, le=9)  # 1 fast, 2 dfast, 3 greedy, 4 lazy, 5 lazy2, ...

    def params(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}
