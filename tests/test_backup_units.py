"""Pure parts of the backup code, as tables of cases: retention selection, tool choice,
count comparisons, the layout, and the command runner's guarantees."""

from __future__ import annotations

import os
import random
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.core.backup.layout import BackupRef, id_time, new_backup_id
from tasks.core.backup.manifest import BackupManifest, Check, Verification
from tasks.core.backup.postgres import compare_counts
from tasks.core.backup.prune import Candidate, Policy, select
from tasks.core.backup.redis_backup import check_counts, counts_between
from tasks.core.backup.stream import ObjectInfo
from workers.config.secrets import mask_secrets
from workers.doors import commands, pgtools
from workers.doors.commands import Command, CommandError, CommandTimeout
from workers.doors.pgtools import Tool, choose, parse_version
from workers.errors import PermanentError

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def c(days_ago: float, state: str = "complete", verified: bool = True, corrupt: bool = False,
      name: str | None = None) -> Candidate:
    when = NOW - timedelta(days=days_ago)
    return Candidate(name or f"d{days_ago:g}", when, state, verified, corrupt)


def gone(candidates: list[Candidate], policy: Policy) -> set[str]:
    return {d.backup_id for d in select(candidates, policy, NOW) if not d.keep}


P = Policy(max_age=timedelta(days=7), keep_min=3)

PRUNE_CASES = [
    # (description, candidates, policy, expected deleted ids)
    ("nothing old: keep all", [c(1), c(2), c(3)], P, set()),
    ("old verified beyond keep_min go", [c(1), c(2), c(3), c(10), c(20)], P, {"d10", "d20"}),
    ("keep_min keeps old verified when few are recent", [c(1), c(10), c(20), c(30)], P, {"d30"}),
    ("unverified do not count toward keep_min", [c(1, verified=False), c(10), c(20), c(30), c(40)], P, {"d40"}),
    ("newest verified never deleted, however old", [c(1, verified=False), c(100)],
     Policy(max_age=timedelta(days=7), keep_min=1), set()),
    ("unverified old backups go even under keep_min", [c(1), c(10, verified=False), c(20, verified=False)], P,
     {"d10", "d20"}),
    ("incomplete younger than a day stays (may be running)", [c(1), c(0.2, state="incomplete")], P, set()),
    ("incomplete older than a day goes", [c(1), c(2, state="incomplete")], P, {"d2"}),
    ("failed older than a day goes, even if recent", [c(1), c(1.5, state="failed")], P, {"d1.5"}),
    ("corrupt goes at once", [c(1), c(0.5, corrupt=True)], P, {"d0.5"}),
    ("corrupt newest does not protect itself", [c(0.1, corrupt=True), c(30)], Policy(keep_min=1), {"d0.1"}),
    ("daily tier keeps one per day beyond max_age",
     [c(1), c(8), c(8.2), c(9), c(10)], Policy(max_age=timedelta(days=7), keep_min=1, daily=3), {"d8.2", "d10"}),
    ("weekly tier: one per ISO week", [c(0), c(14), c(15), c(21), c(60)],
     Policy(max_age=timedelta(days=1), keep_min=1, weekly=3), {"d15", "d60"}),
    ("monthly tier prefers the verified backup of the month",
     [c(0), c(38, verified=False), c(42), c(80)], Policy(max_age=timedelta(days=1), keep_min=1, monthly=2),
     {"d38", "d80"}),  # 38 and 42 days before 15 March are both in February
    ("no complete backups: only orphans handled", [c(3, state="incomplete"), c(0.1, state="failed")], P, {"d3"}),
    # The floor (issue 8.6): the newest complete and the newest verified backup survive any policy.
    ("all unverified, all older than max age: the newest complete stays",
     [c(40, verified=False, name="b0"), c(41, verified=False, name="b1"), c(42, verified=False, name="b2")],
     Policy(), {"b1", "b2"}),
    ("all verified, all older than max age, keep_min 1: the newest stays",
     [c(40), c(50), c(60)], Policy(max_age=timedelta(days=30), keep_min=1), {"d50", "d60"}),
    ("newest complete unverified and old, newest verified older: both stay",
     [c(40, verified=False), c(45), c(50, verified=False), c(55)], Policy(max_age=timedelta(days=30), keep_min=1),
     {"d50", "d55"}),
    ("newest complete is corrupt: the next good one is the floor", [c(31, corrupt=True), c(35, verified=False),
                                                                     c(36, verified=False)], Policy(), {"d31", "d36"}),
    ("a corrupt backup that was restore-tested is not the verified floor",
     [c(40, verified=False), c(41, corrupt=True)], Policy(keep_min=1), {"d41"}),
    ("tiers off, keep_min large, everything ancient: the floor still holds",
     [c(400, verified=False), c(500, verified=False)], Policy(max_age=timedelta(days=1), keep_min=10), {"d500"}),
    ("an incomplete newer backup does not replace the complete floor",
     [c(2, state="incomplete"), c(40, verified=False), c(41, verified=False)], Policy(), {"d2", "d41"}),
]


@pytest.mark.parametrize("desc,candidates,policy,expected", PRUNE_CASES, ids=[x[0] for x in PRUNE_CASES])
def test_prune_selection(desc: str, candidates: list[Candidate], policy: Policy, expected: set[str]) -> None:
    assert gone(candidates, policy) == expected


def test_prune_issue_example_keeps_the_newest_complete_backup() -> None:
    """The case from issue 8: verification off, backups stopped 40 days ago, default policy."""
    now = NOW
    decisions = select([Candidate(f"b{i}", now - timedelta(days=40 + i), "complete") for i in range(3)], Policy(), now)
    kept = [d for d in decisions if d.keep]
    assert [d.backup_id for d in kept] == ["b0"] and kept[0].reason == "newest complete backup"


def test_prune_never_deletes_the_newest_good_backups_whatever_the_policy() -> None:
    """The invariant over many generated sets (seeded, so a failure reproduces): the newest
    complete non-corrupt backup and the newest verified one are always kept."""
    rng = random.Random(8)
    for _ in range(3000):
        cands = []
        for i in range(rng.randint(0, 8)):
            state = rng.choice(["complete", "complete", "complete", "failed", "incomplete"])
            cands.append(Candidate(f"x{i}", NOW - timedelta(days=rng.uniform(0, 400)), state,
                                   verified=rng.random() < 0.4, corrupt=rng.random() < 0.15))
        policy = Policy(max_age=timedelta(days=rng.choice([1, 7, 30, 90])), keep_min=rng.randint(1, 5),
                        daily=rng.choice([0, 0, 3]), weekly=rng.choice([0, 2]), monthly=rng.choice([0, 1]),
                        incomplete_after=timedelta(hours=rng.choice([1, 24, 72])))
        kept = {d.backup_id for d in select(cands, policy, NOW) if d.keep}
        good = sorted((x for x in cands if x.state == "complete" and not x.corrupt), key=lambda x: x.started_at)
        if good:
            assert good[-1].backup_id in kept, (cands, policy)
        verified = [x for x in good if x.verified]
        if verified:
            assert verified[-1].backup_id in kept, (cands, policy)
        assert not any(x.corrupt and x.backup_id in kept for x in cands if x.state == "complete")


def test_prune_reasons_are_stated() -> None:
    decisions = {d.backup_id: d for d in select([c(1), c(10), c(40), c(3, state="incomplete")], P, NOW)}
    assert decisions["d1"].reason == "newest verified backup"
    assert "keep_min" in decisions["d10"].reason
    assert decisions["d3"].reason.startswith("incomplete backup older than")
    assert all(d.reason for d in decisions.values())


TOOLS = [Tool(15, 20, "/usr/lib/postgresql/15/bin/pg_dump"), Tool(18, 6, "/embedded/pg_dump"),
         Tool(16, 1, "/opt/16/pg_dump")]


@pytest.mark.parametrize("server,expected", [(15, "/usr/lib/postgresql/15/bin/pg_dump"), (16, "/opt/16/pg_dump"),
                                             (17, "/embedded/pg_dump"), (18, "/embedded/pg_dump"),
                                             (12, "/usr/lib/postgresql/15/bin/pg_dump")])
def test_pg_dump_choice_is_oldest_at_least_as_new(server: int, expected: str) -> None:
    assert choose("pg_dump", server, TOOLS, "the server").path == expected


def test_no_pg_dump_new_enough_is_a_clear_permanent_error() -> None:
    with pytest.raises(PermanentError) as err:
        choose("pg_dump", 19, TOOLS, "the server (19.1)")
    text = str(err.value)
    assert "no pg_dump at least as new as the server (19.1) (PostgreSQL 19)" in text
    assert "/embedded/pg_dump 18.6" in text and "pg_bin_dir" in text


@pytest.mark.parametrize("text,expected", [("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", (15, 20)),
                                           ("pg_restore (PostgreSQL) 18.6", (18, 6)), ("150020", (15, 20)),
                                           ("90624", (9, 6)), ("180001", (18, 1)), ("nonsense", None)])
def test_parse_version(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_version(text) == expected


def test_compare_counts_exact_estimate_unknown() -> None:
    expected = {"public.a": {"rows": 10, "method": "exact"}, "public.b": {"rows": 100000, "method": "estimate"},
                "public.c": {"rows": -1, "method": "unknown"}, "public.d": {"rows": 5, "method": "exact"}}
    problems, stats = compare_counts(expected, {"public.a": 10, "public.b": 104000, "public.c": 7})
    assert problems == ["public.d: missing after restore"]
    assert stats == {"exact": 2, "estimate": 1, "unknown": 1}
    problems, _ = compare_counts(expected, {"public.a": 9, "public.b": 150000, "public.c": 0, "public.d": 5})
    assert problems == ["public.a: 9 rows restored, manifest says 10",
                        "public.b: 150000 rows restored, manifest estimated 100000"]


def test_redis_counts_range_and_expiry() -> None:
    counts = counts_between({"db0": {"keys": 10, "expires": 2}, "db1": {"keys": 5, "expires": 0}},
                            {"db0": {"keys": 12, "expires": 2}})
    assert counts["db0"] == {"keys": 10, "min": 10, "max": 12, "expires": 2, "method": "range"}
    assert counts["db1"]["min"] == 0 and counts["db1"]["max"] == 5
    assert check_counts(counts, {"db0": 9, "db1": 3}) == []  # 9 ≥ 10 - 2 expiring keys
    assert check_counts(counts, {"db0": 13, "db1": 5}) == ["db0: 13 keys restored, manifest says 10..12"]


def test_layout_and_ids() -> None:
    when = datetime(2026, 1, 5, 1, 2, 3, tzinfo=UTC)
    bid = new_backup_id(when)
    assert bid.startswith("20260105T010203Z-") and id_time(bid) == when
    ref = BackupRef("postgres", "main", bid)
    assert ref.dir == f"postgres/main/2026/01/05/{bid}"
    assert BackupRef.from_key(ref.key("manifest.json")) == (ref, "manifest.json")
    assert BackupRef.from_key("postgres/main/2026/01/05/not-an-id/x") is None
    assert id_time("garbage") is None


def test_manifest_round_trip() -> None:
    ref = BackupRef.new("sqlite", "assets")
    m = BackupManifest(ref, started_at=NOW, status="complete", finished_at=NOW + timedelta(seconds=3),
                       objects=[ObjectInfo("data.sqlite.zst", 10, "ab" * 32, 40, "sqlite3")],
                       counts={"t": {"rows": 3, "method": "exact"}})
    import json

    again = BackupManifest.from_dict(json.loads(m.to_json()))
    assert again.as_dict() == m.as_dict() and again.complete and again.duration_s == 3.0
    v = Verification(checksum=Check(NOW, True), format=Check(NOW, True, "ok"))
    assert Verification.from_json(v.to_json()).verified
    assert Verification(checksum=Check(NOW, False, "bad")).corrupt


def test_mask_secrets_removes_secrets_and_passwords() -> None:
    text = "FATAL: password=hunter22 for postgresql://u:hunter22@h/db and s3cr3t-token"
    out = mask_secrets(text, "s3cr3t-token")
    assert "hunter22" not in out and "s3cr3t-token" not in out
    assert "postgresql://u:***@h/db" in out


def test_command_runner_codes_timeout_and_redaction() -> None:
    py = sys.executable
    ok = commands.run(Command("py", (py, "-c", "print('hi')"), timeout_s=20))
    assert ok.stdout.strip() == b"hi"
    with pytest.raises(CommandError) as err:
        commands.run(Command("py", (py, "-c", "import sys; sys.stderr.write('error: bad pw topsecret\\n');"
                                              " sys.exit(3)"), timeout_s=20, secrets=("topsecret",)))
    assert err.value.returncode == 3 and "topsecret" not in str(err.value) and "***" in str(err.value)
    allowed = commands.run(Command("py", (py, "-c", "raise SystemExit(1)"), timeout_s=20, ok_codes=frozenset({0, 1})))
    assert allowed.returncode == 1
    with pytest.raises(CommandTimeout):
        commands.run(Command("py", (py, "-c", "import time; time.sleep(10)"), timeout_s=0.5))
    with pytest.raises(ValueError):
        Command("py", ("python3", "-c", "1"), timeout_s=1)  # never a bare name: resolved once, absolute


def test_streaming_command_is_killed_at_its_timeout() -> None:
    cmd = Command("sleeper", (sys.executable, "-c", "import time; time.sleep(30)"), timeout_s=0.5)
    with commands.start(cmd, stdout=True) as proc:
        assert proc.stdout.read() == b""  # returns once the timer killed it
        with pytest.raises(CommandTimeout):
            proc.finish()


def test_passfile_is_private_and_removed() -> None:
    with pgtools.passfile("pa:ss\\word") as env:
        path = Path(env["PGPASSFILE"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == "*:*:*:*:pa\\:ss\\\\word\n"
    assert not path.exists()
    with pgtools.passfile(None) as env:
        assert env == {}


def test_child_environment_drops_inherited_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "leaked")
    monkeypatch.setenv("REDISCLI_AUTH", "leaked")
    env = commands.child_env({"PGPASSFILE": "/x"})
    assert "PGPASSWORD" not in env and "REDISCLI_AUTH" not in env and env["PGPASSFILE"] == "/x"
    assert env["PATH"] == os.environ["PATH"]
