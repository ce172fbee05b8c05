"""Beat HA (issue 11, item 1): any number of `maintd beat` processes on one Redis, exactly one
dispatching (RedBeat's leader lock, workers/beat_scheduler.py). Real beat processes on real
Redis; no worker: the messages beat sends stay in their queues, and the test reads them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import ROOT, ConfigFactory, maintd_cmd, wait_until
from workers.beat_scheduler import KEY_PREFIX, LOCK_KEY, SCHEDULE_KEY, STATICS_KEY, stored_entries

LOCK_TIMEOUT = 5  # [beat] lock_timeout of these tests (default 60)
EVERY_MINUTE = ("health.http[api]", "maintd.release_deferred")


class Beat:
    """One `maintd beat` process tree, logging to its own file."""

    def __init__(self, name: str, config: Path, tmp: Path) -> None:
        self.name, self.log = name, tmp / f"beat-{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(maintd_cmd("--config", str(config), "beat"), cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def leads(self) -> bool:
        return "beat: Acquired lock" in self.text()

    def tree(self) -> list[int]:
        try:
            return [self.proc.pid] + [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill9(self) -> None:
        """SIGKILL to the supervisor and its celery beat at once: the host or container died."""
        for pid in self.tree():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode


def queued_messages(client: Any) -> list[dict[str, Any]]:
    """Every message waiting in a queue (kombu's Redis transport: one list per queue)."""
    out = []
    for key in client.scan_iter(count=1000):
        name = key.decode()
        if name.startswith(("_kombu", "maintd:", "unacked")) or client.type(key) != b"list":
            continue
        out += [json.loads(raw) for raw in client.lrange(key, 0, -1)]
    return out


def slot_of(message: dict[str, Any], expires_s: int) -> datetime:
    """The minute a message was sent for: beat stamps ``expires`` = sending time + the entry's expiry."""
    sent = datetime.fromisoformat(message["headers"]["expires"]) - timedelta(seconds=expires_s)
    return sent.replace(second=0, microsecond=0)


def ha_config(config: ConfigFactory) -> Path:
    return config.write(f'[beat]\nlock_timeout = {LOCK_TIMEOUT}\n'
                        '[[http]]\nname = "api"\nurl = "http://127.0.0.1:9/"\n'
                        '[tasks."health.http"]\nsoft_time_limit = 40\ntime_limit = 50\n'
                        '[schedule]\n"health.http" = "* * * * *"\n')


@pytest.mark.slow
def test_kill_9_the_dispatching_beat_another_takes_over_no_slot_lost_or_doubled(
        config: ConfigFactory, redis_server: Any, tmp_path: Path) -> None:
    """Three beats; the leader is killed (SIGKILL, whole tree) 1.5 s before a minute boundary,
    so that slot falls due during the hand-over; a standby takes over within the lock timeout
    and sends it once, late. Then the new leader is killed just after it sent that slot: the
    last beat takes over and does not send it again. Every every-minute entry has exactly one
    message per minute from the first to the last, with its schedule header and time limits."""
    from workers.config import get_config
    from workers.schedule import expand

    path = ha_config(config)
    entries = {e.name: e for e in expand(get_config())}
    client = redis_server.client()
    beats = [Beat("a", path, tmp_path)]
    try:
        wait_until(lambda: "schedule written" in beats[0].text(), 60, "the first beat to lead")
        beats += [Beat("b", path, tmp_path), Beat("c", path, tmp_path)]
        wait_until(lambda: all("beat: Starting..." in b.text() for b in beats[1:]), 60, "the standbys")
        assert [b.leads() for b in beats] == [True, False, False]

        # the boundary that will fall due during the first hand-over
        now = datetime.now().astimezone()
        boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if (boundary - now).total_seconds() < 4:
            boundary += timedelta(minutes=1)
        time.sleep(max(0.0, (boundary - datetime.now().astimezone()).total_seconds() - 1.5))
        token = client.get(LOCK_KEY)
        beats[0].kill9()
        killed_at = time.monotonic()
        wait_until(lambda: client.get(LOCK_KEY) not in (None, token), LOCK_TIMEOUT + 5, "a standby to take the lock",
                   interval_s=0.05)
        takeover_s = time.monotonic() - killed_at
        print(f"hand-over took {takeover_s:.2f}s (lock timeout {LOCK_TIMEOUT}s)")
        assert takeover_s <= LOCK_TIMEOUT + 0.5, f"hand-over took {takeover_s:.1f}s"
        second = wait_until(lambda: next((b for b in beats[1:] if b.leads()), None), 10, "the new leader's log")
        assert sum(b.leads() for b in beats[1:]) == 1  # exactly one of the standbys dispatches

        def sent_for(slot: datetime) -> Counter[str]:
            return Counter(m["headers"].get("maintd_entry") for m in queued_messages(client)
                           if m["headers"].get("maintd_entry") in EVERY_MINUTE
                           and slot_of(m, entries[m["headers"]["maintd_entry"]].expires_s) == slot)

        wait_until(lambda: set(sent_for(boundary)) == set(EVERY_MINUTE), 15, "the slot due during the hand-over")
        token = client.get(LOCK_KEY)
        assert isinstance(second, Beat)
        second.kill9()  # just after it sent the slot
        wait_until(lambda: client.get(LOCK_KEY) not in (None, token), LOCK_TIMEOUT + 5, "the last beat to take over",
                   interval_s=0.05)
        last = next(b for b in beats if b.proc.poll() is None)
        wait_until(lambda: "schedule written" in last.text(), 10, "the last beat to write the schedule")
        time.sleep(3)  # three of its ticks: time enough to send the slot again, were it to
        assert last.stop() == 0
    finally:
        for b in beats:
            b.kill9() if b.proc.poll() is None else None

    messages = [m for m in queued_messages(client) if m["headers"].get("maintd_entry") in EVERY_MINUTE]
    per_slot = Counter((m["headers"]["maintd_entry"], slot_of(m, entries[m["headers"]["maintd_entry"]].expires_s))
                       for m in messages)
    slots = sorted({slot for _, slot in per_slot})
    assert boundary in slots
    expected = [slots[0] + timedelta(minutes=i) for i in range(int((slots[-1] - slots[0]).total_seconds() // 60) + 1)]
    assert slots == expected, "a minute was skipped"
    assert per_slot == Counter({(name, slot): 1 for name in EVERY_MINUTE for slot in slots})
    for m in messages:  # the schedule header and the config's limits travel with each message
        headers = m["headers"]
        assert headers["maintd_entry"] == entries[headers["maintd_entry"]].name
        if headers["task"] == "health.http":
            assert headers["timelimit"] == [50, 40] and headers["argsrepr"] == "api"


def test_schedule_change_takes_effect_at_next_start_without_stale_entries(
        config: ConfigFactory, redis_server: Any, tmp_path: Path) -> None:
    """Entries live in Redis; a beat start writes the config's and deletes the rest (also one
    left by an older deployment that RedBeat's own bookkeeping does not know); an entry kept
    keeps its last run, a changed cron is the new one."""
    from workers.config import get_config
    from workers.schedule import expand

    client = redis_server.client()
    first = config.write('[beat]\nlock_timeout = 5\n'
                         '[[http]]\nname = "api"\nurl = "http://127.0.0.1:9/"\n'
                         '[[http]]\nname = "web"\nurl = "http://127.0.0.1:9/web"\n'
                         '[schedule]\n"health.http" = "*/7 * * * *"\n"maintd.noop" = "0 0 1 1 *"\n')
    names_first = {e.name for e in expand(get_config())}

    def start_once(path: Path, name: str) -> str:
        beat = Beat(name, path, tmp_path)
        try:
            wait_until(lambda: "schedule written" in beat.text(), 60, f"beat {name} to write its schedule")
        finally:
            assert beat.stop() == 0
        return beat.text()

    start_once(first, "one")
    assert stored_entries(client) == names_first | {"celery.backend_cleanup"}
    kept_meta = client.hget(KEY_PREFIX + "maintd.noop", "meta")
    # an entry of an older deployment, unknown to RedBeat's statics set
    client.hset(KEY_PREFIX + "postgres.analyze[gone]", mapping={"definition": "{}", "meta": "{}"})
    client.zadd(SCHEDULE_KEY, {KEY_PREFIX + "postgres.analyze[gone]": 1})

    second = config.write('[beat]\nlock_timeout = 5\n'
                          '[[http]]\nname = "api"\nurl = "http://127.0.0.1:9/"\n'
                          '[schedule]\n"health.http" = "*/3 * * * *"\n"maintd.noop" = "0 0 1 1 *"\n'
                          '"watchdog.schedule" = "off"\n')
    names_second = {e.name for e in expand(get_config())}
    assert "health.http[web]" in names_first - names_second and "watchdog.schedule" in names_first - names_second
    log = start_once(second, "two")
    assert "removed 3 entries no longer in the config" in log
    assert stored_entries(client) == names_second | {"celery.backend_cleanup"}
    assert {k.decode() for k in client.smembers(STATICS_KEY)} == names_second
    assert client.hget(KEY_PREFIX + "maintd.noop", "meta") == kept_meta
    definition = json.loads(client.hget(KEY_PREFIX + "health.http[api]", "definition"))
    assert definition["schedule"]["minute"] == "*/3"
    assert definition["options"]["headers"] == {"maintd_entry": "health.http[api]"}
