"""The beat scheduler: RedBeat (celery-redbeat), so any number of ``maintd beat`` processes
can run and exactly one dispatches.

The schedule and each entry's last run live in the broker's Redis under ``KEY_PREFIX``;
a leader lock (``KEY_PREFIX + ":lock"``) lets one beat tick. The leader renews the lock
every tick; the others wait for it, trying every tick, and the first to get it after the
leader died carries on from the last runs stored in Redis: an entry that fell due during the
hand-over is sent once, late; one already sent is not sent again (RedBeat stores the run
*before* sending the message). Timing comes from ``[beat] lock_timeout``
(``workers.config.beat``).

Only the leader writes the schedule, once it holds the lock: a standby started with another
config (a redeploy that overlaps) does not rewrite what the leader dispatches. The leader
writes the config's entries and deletes every other entry under the prefix, so a schedule
change takes effect on the next start of the leading beat with no stale entry left.
"""

from __future__ import annotations

import logging
from typing import Any

from redbeat import RedBeatScheduler
from redbeat.schedulers import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "maintd:beat:"
# RedBeat's own keys under the prefix (entries are KEY_PREFIX + entry name; names never start with ":").
SCHEDULE_KEY = KEY_PREFIX + ":schedule"
STATICS_KEY = KEY_PREFIX + ":statics"
LOCK_KEY = KEY_PREFIX + ":lock"


def beat_settings(broker_url: str, lock_ttl_s: int, tick_s: int) -> dict[str, Any]:
    """The Celery settings that make ``celery beat`` run this scheduler on the broker's Redis."""
    return {
        "beat_scheduler": "workers.beat_scheduler:MaintdScheduler",
        "beat_max_loop_interval": tick_s,
        "redbeat_redis_url": broker_url,
        "redbeat_key_prefix": KEY_PREFIX,
        "redbeat_lock_key": LOCK_KEY,
        "redbeat_lock_timeout": lock_ttl_s,
        # the client's own timeouts; no retry: a beat that loses Redis exits and is restarted
        # (it may have lost the lock meanwhile, and must not dispatch on a stale belief)
        "redbeat_redis_options": {"socket_timeout": 15, "socket_connect_timeout": 5},
    }


def entry_key(name: str) -> str:
    return KEY_PREFIX + name


def stored_entries(client: Any) -> set[str]:
    """Names of every entry stored under the prefix (in the schedule or left as a bare hash)."""
    raw = [*client.zrange(SCHEDULE_KEY, 0, -1), *client.scan_iter(match=KEY_PREFIX + "*", count=1000)]
    keys = {k.decode() if isinstance(k, bytes) else k for k in raw}
    keys = {k for k in keys if not k.startswith(KEY_PREFIX + ":")}
    return {k[len(KEY_PREFIX):] for k in keys if k.startswith(KEY_PREFIX)}


class MaintdScheduler(RedBeatScheduler):
    """RedBeat with the schedule written by the leader only (see the module docstring)."""

    _synced = False

    def setup_schedule(self) -> None:
        """Nothing at construction: a standby builds this too, before it waits for the lock."""

    def sync_schedule(self) -> list[str]:
        """Write the config's entries (keeping each one's last run), delete all others; the
        names deleted."""
        client = get_redis(self.app)
        wanted = set(self.app.redbeat_conf.schedule) | self._default_names()
        stale = sorted(stored_entries(client) - wanted)
        for name in stale:
            with client.pipeline() as pipe:
                pipe.zrem(SCHEDULE_KEY, entry_key(name))
                pipe.delete(entry_key(name))
                pipe.srem(STATICS_KEY, name)
                pipe.execute()
        RedBeatScheduler.setup_schedule(self)  # RedBeat: defaults, update_from_dict (last runs kept), statics
        if stale:
            logger.info("beat: removed %d entries no longer in the config: %s", len(stale), ", ".join(stale))
        logger.info("beat: schedule written: %d entries", len(wanted))
        return stale

    def _default_names(self) -> set[str]:
        """Celery's built-in entries (``install_default_entries``) that RedBeat stored as well."""
        if self.app.conf.result_expires and not self.app.backend.supports_autoexpire:
            return {"celery.backend_cleanup"}
        return set()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._synced:
            if self.lock is None:  # RedBeat's beat_init handler failed (its exception is squashed)
                raise RuntimeError("beat: the leader lock was not acquired")
            self.sync_schedule()
            self._synced = True
        return float(super().tick(*args, **kwargs))
