"""files.rotate_logs on real files: the lossless copytruncate under a steady writer, zstd,
the directory cap, signal and postrotate, dry-run = the exact plan, config errors."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import zstandard
from pydantic import ValidationError

from tasks.core.files import rotate
from tasks.core.files.cut import collapse_supported
from workers.config import LogsTarget

WRITER = textwrap.dedent("""
    import os, sys, time
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    seq = 0
    stop = sys.argv[2]
    while not os.path.exists(stop):
        for _ in range(50):  # 50 lines a millisecond, each one write(2)
            os.write(fd, f"seq={seq} {'x' * (seq % 37)}\\n".encode())
            seq += 1
        time.sleep(0.001)
    print(seq)
""")


def now() -> datetime:
    return datetime.now().astimezone()


def target(path: Path, **kw: Any) -> LogsTarget:
    return LogsTarget(name="app", host="h1", path=path, **kw)


def read_any(p: Path) -> bytes:
    data = p.read_bytes()
    if p.name.endswith(".gz"):
        return gzip.decompress(data)
    if p.name.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


@pytest.mark.skipif(not collapse_supported(Path("/tmp")), reason="filesystem without collapse range")
def test_copytruncate_under_a_steady_writer_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    log, stop = tmp_path / "app.log", tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        t = target(tmp_path, copytruncate=True, rotate=100, compress="gzip")
        rotated, deadline = 0, time.monotonic() + 60
        while rotated < 6 and time.monotonic() < deadline:  # a loaded machine writes less per interval
            time.sleep(0.4)
            result = rotate.run(t, now())
            assert result.status == "ok", result.summary
            rotated += result.metrics["rotated"]
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=30)
    total = int(out)
    assert rotated == 6  # a cut needs a line ending on a block boundary: a few 100 kB have dozens
    seen: list[int] = []
    parts = sorted(tmp_path.glob("app.log.*"), key=lambda p: -int(p.name.split(".")[2]))  # oldest first
    assert len(parts) == rotated
    for p in [*parts, log]:
        text = read_any(p).decode()
        assert text == "" or text.endswith("\n"), f"{p.name} ends inside a line"
        for line in text.splitlines():
            seq = int(line.split()[0].removeprefix("seq="))
            assert line == f"seq={seq} {'x' * (seq % 37)}", f"damaged line in {p.name}: {line[:80]!r}"
            seen.append(seq)
    assert seen == list(range(total)), "a line was lost, duplicated or reordered"


def test_zstd_compression_parallel_and_readable(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"s{i}.log").write_bytes(b"".join(b"line %d of s%d\n" % (n, i) for n in range(20000)))
    result = rotate.run(target(tmp_path, compress="zstd"), now())
    assert result.status == "ok" and result.metrics["compressed"] == 4
    for i in range(4):
        assert read_any(tmp_path / f"s{i}.log.1.zst").startswith(b"line 0 of s%d\n" % i)
        assert (tmp_path / f"s{i}.log").stat().st_size == 0
    assert result.metrics["bytes_out"] < result.metrics["bytes_in"] / 5


def test_directory_cap_deletes_oldest_rotations_first(tmp_path: Path) -> None:
    for n in range(1, 6):
        p = tmp_path / f"app.log.{n}.gz"
        p.write_bytes(os.urandom(100_000))
        os.utime(p, (time.time() - n * 86400,) * 2)
    (tmp_path / "app.log").write_bytes(b"x\n" * 10)
    result = rotate.run(target(tmp_path, max_dir_size="350k", delete_after="off"), now())
    left = sorted(p.name for p in tmp_path.iterdir())
    # after the shift .1..5 are .2..6 (100 kB each); the two oldest go so that the directory fits 350 KiB
    assert left == ["app.log", "app.log.1.gz", "app.log.2.gz", "app.log.3.gz", "app.log.4.gz"], left
    assert result.metrics["dir_bytes"] <= 350 * 1024


def test_signal_from_pidfile_and_postrotate_argv(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("hello\n")
    marker = tmp_path / "reopened"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import signal, sys, time, pathlib
        signal.signal(signal.SIGUSR1, lambda *a: pathlib.Path({str(marker)!r}).write_text("usr1"))
        print("ready", flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        (tmp_path / "app.pid").write_text(f"{proc.pid}\n")
        argv = ["/bin/sh", "-c", 'echo "$0 $1" > "$2"', "semi;colon", "$(not expanded)", str(tmp_path / "post")]
        t = target(logs, pidfile=tmp_path / "app.pid", signal="USR1", postrotate=argv)
        result = rotate.run(t, now())
        assert result.status == "ok", result.summary
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text() == "usr1"
        assert (tmp_path / "post").read_text() == "semi;colon $(not expanded)\n"  # argv, no shell parsing of args
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_dry_run_lists_exactly_the_steps_a_run_takes(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("a\n" * 100)
    (tmp_path / "empty.log").write_text("")
    for n in (1, 2, 3):
        (tmp_path / f"a.log.{n}.gz").write_bytes(gzip.compress(b"old %d\n" % n))
    old = tmp_path / "a.log.2.gz"
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    t = target(tmp_path, rotate=3, delete_after="30d")
    before = sorted(p.name for p in tmp_path.iterdir())
    plan = rotate.run(t, now(), dry_run=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing touched
    assert plan.actions == [
        f"delete {tmp_path}/a.log.3.gz (rotate 3)",
        f"rename {tmp_path}/a.log.2.gz -> {tmp_path}/a.log.3.gz",
        f"rename {tmp_path}/a.log.1.gz -> {tmp_path}/a.log.2.gz",
        f"rotate {tmp_path}/a.log -> {tmp_path}/a.log.1 (create)",
        f"compress {tmp_path}/a.log.1 (gzip)",
        f"delete {tmp_path}/a.log.3.gz (older than 30d)",
    ]
    done = rotate.run(t, now())
    assert [a.split(" -> a.log.1.gz")[0] for a in done.actions] == [
        a.replace(" (gzip)", "") for a in plan.actions]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "a.log.1.gz", "a.log.2.gz", "empty.log"]
    assert done.metrics["skipped"] == {"empty.log": "empty (notifempty)"}


@pytest.mark.parametrize("field,value,message", [
    ("postrotate", ["kill -HUP 1"], "must be an absolute path"),
    ("signal", "NOPE", "not a signal name"),
    ("dateformat", "-%Y%q", "%q not allowed"),
    ("size", "ten megs", "expected a number"),
    ("delete_after", "soon", "age 'soon'"),
    ("compress", "bzip2", "compress"),
])
def test_bad_policy_is_one_clear_error(tmp_path: Path, field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        target(tmp_path, **{field: value})
    assert message in str(err.value) and field in str(err.value)


def test_copytruncate_without_collapse_range_warns(tmp_path: Path) -> None:
    """tmpfs has no collapse range: the dry run says so, the run falls back to copy-then-truncate and warns."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm")
    import tempfile

    with tempfile.TemporaryDirectory(dir=shm) as d:
        logs = Path(d)
        (logs / "app.log").write_text("a line\n" * 10)
        t = target(logs, copytruncate=True)
        plan = rotate.run(t, now(), dry_run=True)
        assert plan.actions[0] == f"copytruncate {logs}/app.log -> {logs}/app.log.1 (copy then truncate: may lose lines)"
        done = rotate.run(t, now())
        assert done.status == "warning" and "may be lost" in done.summary
        assert (logs / "app.log").stat().st_size == 0
        assert read_any(logs / "app.log.1.gz") == b"a line\n" * 10
    ext4 = rotate.run(target(tmp_path, copytruncate=True, missingok=True), now(), dry_run=True)
    assert ext4.status == "ok"
    (tmp_path / "app.log").write_text("x\n")
    assert rotate.run(target(tmp_path, copytruncate=True), now(), dry_run=True).actions[0].endswith("(lossless cut)")


def test_check_config_names_file_line_target_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.cli import main
    from workers.config import reset_config

    monkeypatch.setenv("MAINTD_CONFIG", str(tmp_path / "maintd.toml"))  # main() exports it: undone after the test

    conf = tmp_path / "maintd.toml"
    conf.write_text('[maintd]\nhost = "h1"\n\n[[logs]]\nname = "app"\nhost = "h1"\npath = "/var/log/app"\n'
                    'postrotate = ["kill -HUP 1"]\n')
    assert main(["--config", str(conf), "check-config"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f'{conf}:8: logs["app"].postrotate: ' in err and "absolute path" in err
    reset_config()
