"""Files backups of an ordinary tree (issue 8.9), on real files as root: absolute, relative
and dangling symlinks, a symlink to a directory outside, a FIFO, a socket, hard links, a
setgid directory, a setuid file, files of different owners. Backup, verify, restore test
and restore all pass; links come back as links, nothing is written through a link,
special files are skipped and named, modes and owners are kept. Hostile archives are
refused."""

from __future__ import annotations

import io
import os
import socket
import stat
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tasks.core.backup import drill, files, restore, verify
from tasks.core.backup.coordinate import BackupSession, Compression, coordinate
from tasks.core.backup.inventory import list_backups
from tasks.core.backup.local import LocalStore
from workers.config import FilesTarget
from workers.errors import PermanentError

FRESH = verify.Freshness(timedelta(hours=24), timedelta(days=8))
CTX: dict[str, Any] = {"host": "testhost", "task_id": "t-1", "compression": Compression(3, 2)}
AS_ROOT = os.geteuid() == 0


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """/…/srv/app: what a real application directory holds."""
    src = tmp_path / "srv" / "app"
    (src / "releases" / "v2").mkdir(parents=True)
    (src / "releases" / "v2" / "run.sh").write_text("#!/bin/sh\necho v2\n")
    os.chmod(src / "releases" / "v2" / "run.sh", 0o755)
    (src / "current").symlink_to(src / "releases" / "v2")  # absolute, like /opt/app/current
    (src / "latest").symlink_to("releases/v2")  # relative
    (src / "cert.pem").symlink_to("/etc/ssl/certs/does-not-exist-here.pem")  # absolute, dangling
    (src / "etc").symlink_to("/etc")  # a directory outside: never followed
    shared = src / "shared"
    shared.mkdir()
    os.chmod(shared, 0o2775)  # setgid: new files inherit the group
    (shared / "report.csv").write_text("a,b\n1,2\n")
    (src / "secret.key").write_text("k" * 64)
    os.chmod(src / "secret.key", 0o600)
    (src / "helper").write_bytes(b"\x7fELF not really")
    os.chmod(src / "helper", 0o4755)  # setuid
    (src / "data.bin").write_bytes(os.urandom(70_000))
    os.link(src / "data.bin", src / "data.hardlink")
    os.mkfifo(src / "app.fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "app.sock"))
    if AS_ROOT:
        os.chown(shared, 0, 100)
        os.chown(shared / "report.csv", 65534, 100)  # nobody:users
        os.chown(src / "secret.key", 4242, 4243)  # ids without names
        os.lchown(src / "latest", 65534, 65534)
    yield src
    sock.close()


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """What a restore must reproduce: type, mode, owner, link target or content of every path."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                continue
            what = os.readlink(p) if p.is_symlink() else (p.read_bytes() if stat.S_ISREG(st.st_mode) else None)
            mode = None if p.is_symlink() else stat.S_IMODE(st.st_mode)
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), mode, st.st_uid, st.st_gid, what)
    return out


def test_ordinary_tree_backs_up_verifies_restore_tests_and_restores(tree: Path, tmp_path: Path) -> None:
    target = FilesTarget(name="app", paths=[tree], host="testhost")
    store = LocalStore(tmp_path / "store")
    made = files.backup(target, store, **CTX)
    assert made.status == "ok", made
    assert "2 special files skipped" in made.summary and "app.fifo (fifo)" in made.summary
    assert sorted(made.metrics["skipped_special"]) == [f"{tree}/app.fifo (fifo)", f"{tree}/app.sock (socket)"]
    [record] = list_backups(store, "files", "app")
    assert record.manifest is not None and record.manifest.source["skipped_special"]["count"] == 2
    assert "size_estimate_bytes" not in record.manifest.source  # a directory store has no part limit: no lstat pass
    checked = verify.verify(store, target, FRESH, now=now(), timeout_s=60)
    assert checked.status == "ok" and "4 symlinks" in checked.actions[0], checked
    tested = drill.restore_test(store, target, now=now(), timeout_s=60)
    assert tested.status == "ok", tested  # tar's data filter made this critical every week
    assert tested.metrics["symlinks"] == 4

    out = tmp_path / "restored"
    done = restore.restore(store, target, None, now=now(), into=str(out), confirm="app")  # type: ignore[arg-type]
    back = out / str(tree).lstrip("/")
    assert snapshot(back) == snapshot(tree)  # types, modes (setgid, setuid), owners, link targets, bytes
    assert os.readlink(back / "current") == str(tree / "releases" / "v2")  # absolute link kept verbatim
    assert (back / "etc").is_symlink() and os.readlink(back / "etc") == "/etc"  # archived as a link, not /etc
    assert not (back / "app.fifo").exists() and not (back / "app.sock").exists()
    assert os.stat(back / "data.bin").st_ino == os.stat(back / "data.hardlink").st_ino  # still one file
    assert stat.S_IMODE(os.stat(back / "shared").st_mode) == 0o2775
    if AS_ROOT:
        assert (os.stat(back / "secret.key").st_uid, os.stat(back / "secret.key").st_gid) == (4242, 4243)
        assert os.stat(back / "shared" / "report.csv").st_uid == 65534
        assert "modes and owners kept" in done.actions[0]


def test_restore_to_the_original_paths_replaces_a_symlink_instead_of_writing_through_it(
        tree: Path, tmp_path: Path) -> None:
    target = FilesTarget(name="app", paths=[tree], host="testhost")
    store = LocalStore(tmp_path / "store")
    files.backup(target, store, **CTX)
    before = snapshot(tree)
    # Since the backup, someone replaced a directory with a link to elsewhere, and a file with a link.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tree / "shared" / "report.csv").unlink()
    (tree / "shared").rmdir()
    (tree / "shared").symlink_to(elsewhere)
    (tree / "secret.key").unlink()
    (tree / "secret.key").symlink_to(elsewhere / "victim")
    restore.restore(store, target, None, now=now(), confirm="app")  # type: ignore[arg-type]
    assert list(elsewhere.iterdir()) == []  # nothing written through the links
    assert (tree / "shared").is_dir() and not (tree / "shared").is_symlink()
    assert snapshot(tree) == before


def _hostile(store: LocalStore, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    """A complete backup whose tar holds ``members`` (as a tampered or foreign archive would)."""
    def produce(session: BackupSession) -> None:
        session.manifest.source = {"paths": ["/srv/x"]}
        session.manifest.counts = {"/srv/x": {"files": sum(1 for m, _ in members if m.isreg()),
                                              "bytes": sum(m.size for m, _ in members if m.isreg()), "method": "exact"}}
        with session.data_object(files.OBJECT, files.FORMAT) as out, \
                tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for info, data in members:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)

    coordinate(store, "files", "x", produce, host="h", task_id="t", compression=Compression(1, 1))


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, link: str = "") -> tuple[
        tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    info.size = len(data) if data is not None else 0
    return info, data


def test_an_archive_that_escapes_through_a_symlink_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalStore(tmp_path / "store")
    _hostile(store, [_member("srv/x", tarfile.DIRTYPE), _member("srv/x/escape", tarfile.SYMTYPE, link=str(outside)),
                     _member("srv/x/escape/pwned", data=b"owned")])
    target = FilesTarget(name="x", paths=[Path("/srv/x")], host="testhost")
    out = tmp_path / "restored"
    with pytest.raises(PermanentError, match="refused to extract"):
        restore.restore(store, target, None, now=now(), into=str(out), confirm="x")  # type: ignore[arg-type]
    assert not (outside / "pwned").exists()
    assert (out / "srv" / "x" / "escape").is_symlink()  # the link itself is harmless, and kept
    tested = drill.restore_test(store, target, now=now(), timeout_s=60)
    assert tested.status == "critical" and "refused to extract" in tested.summary


def test_special_members_of_an_archive_are_skipped_and_named(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    _hostile(store, [_member("srv/x", tarfile.DIRTYPE), _member("srv/x/a.txt", data=b"hello"),
                     _member("srv/x/pipe", tarfile.FIFOTYPE), _member("srv/x/null", tarfile.CHRTYPE)])
    target = FilesTarget(name="x", paths=[Path("/srv/x")], host="testhost")
    out = tmp_path / "restored"
    done = restore.restore(store, target, None, now=now(), into=str(out), confirm="x")  # type: ignore[arg-type]
    assert (out / "srv" / "x" / "a.txt").read_bytes() == b"hello"
    assert not (out / "srv" / "x" / "pipe").exists() and not (out / "srv" / "x" / "null").exists()
    assert done.status == "ok"
    assert any("skipped 2 special files: /srv/x/pipe (fifo), /srv/x/null (character device)" in a
               for a in done.actions), done.actions
