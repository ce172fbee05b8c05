"""``[beat]``: how beat processes share one schedule (the HA timing of ``workers.beat_scheduler``)."""

from __future__ import annotations

from pydantic import Field

from workers.config.types import Strict


class BeatSection(Strict):
    # Seconds from the death of the dispatching beat until a standby has taken over. The leader
    # lock lives for four fifths of it and is renewed every tick (a fifth); a standby tries
    # to take it every tick, so a hand-over completes within ``lock_timeout``.
    lock_timeout: int = Field(default=60, ge=5, le=3600)

    @property
    def tick_s(self) -> int:
        """The longest a beat sleeps between ticks (leader: lock renewal; standby: lock attempt)."""
        return max(1, self.lock_timeout // 5)

    @property
    def lock_ttl_s(self) -> int:
        return self.lock_timeout - self.tick_s
