"""files.clean_tmp on real trees: age, pattern, keep-newest, exclude, symlinks, mount-free
walks, files held open by a real process, the dry-run plan, and config refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.core.files import clean_tmp, open_files
from workers.config import TmpTarget, parse_config
from workers.errors import ConfigError

DAY = 86400


def touch(path: Path, age_s: float, body: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def target(root: Path, **kw: object) -> TmpTarget:
    return TmpTarget(name="t", host="h", path=root, **{"pattern": "clo-*", "older_than": "1d", **kw})


def test_deletes_old_matching_files_only(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    old = touch(root / "clo-old.txt", 2 * DAY)
    young = touch(root / "clo-young.txt", 60)
    other = touch(root / "app-old.txt", 5 * DAY)
    nested = touch(root / "clo-run1" / "deep" / "data.bin", 3 * DAY)
    os.utime(root / "clo-run1" / "deep", (time.time() - 3 * DAY,) * 2)
    result = clean_tmp.clean(target(root), dry_run=False)
    assert not old.exists() and not nested.exists() and not (root / "clo-run1").exists()
    assert young.exists() and other.exists()
    assert result.metrics["deleted"] == 4  # two files, two emptied directories
    assert f"rm {old}" in result.actions and f"rmdir {root}/clo-run1" in result.actions


def test_dry_run_lists_exactly_what_goes_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    for i in range(5):
        touch(root / f"clo-{i}", (i + 2) * DAY)
    touch(root / "clo-new", 10)
    planned = clean_tmp.clean(target(root), dry_run=True)
    assert sorted(planned.actions) == sorted(f"rm {root}/clo-{i}" for i in range(5))
    assert len(list(root.iterdir())) == 6
    done = clean_tmp.clean(target(root), dry_run=False)
    assert sorted(done.actions) == sorted(planned.actions)
    assert [p.name for p in root.iterdir()] == ["clo-new"]


def test_keep_newest_and_exclude(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    for i in range(6):
        touch(root / f"clo-{i}.log", (i + 2) * DAY)  # clo-0 is the newest
    touch(root / "clo-keep.pid", 30 * DAY)
    touch(root / "clo-cache" / "important.db", 30 * DAY)
    result = clean_tmp.clean(target(root, keep_newest=2, exclude=["*.pid", "clo-cache/important.db"]),
                             dry_run=False)
    left = sorted(p.name for p in root.iterdir())
    assert left == ["clo-0.log", "clo-1.log", "clo-cache", "clo-keep.pid"]
    assert (root / "clo-cache" / "important.db").exists()
    assert result.metrics["kept_newest"] == 2


def test_never_follows_symlinks_or_leaves_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "tmp", tmp_path / "precious"
    victim = touch(outside / "clo-victim", 10 * DAY)
    touch(outside / "sub" / "file", 10 * DAY)
    root.mkdir()
    (root / "clo-link-dir").symlink_to(outside)  # a matching symlink to a directory
    (root / "clo-link-file").symlink_to(victim)
    (root / "dir").mkdir()
    (root / "dir" / "escape").symlink_to(outside / "sub")
    for link in ("clo-link-dir", "clo-link-file"):
        os.utime(root / link, (time.time() - 10 * DAY,) * 2, follow_symlinks=False)
    result = clean_tmp.clean(target(root), dry_run=False)
    assert victim.exists() and (outside / "sub" / "file").exists()
    assert not (root / "clo-link-dir").is_symlink() and not (root / "clo-link-file").is_symlink()
    assert all(str(outside) not in a for a in result.actions)


def test_directory_swapped_for_symlink_after_plan_is_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "tmp", tmp_path / "precious"
    touch(root / "clo-d" / "f", 10 * DAY)
    keep = touch(outside / "f", 10 * DAY)
    t = target(root)
    p = clean_tmp.plan(t)
    assert [i.path for i in p.files] == ["clo-d/f"]
    (root / "clo-d" / "f").unlink()
    (root / "clo-d").rmdir()
    (root / "clo-d").symlink_to(outside)  # the attack: same name, now a link out of the root
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not clean_tmp._remove(fd, p.files[0], time.time(), open_files.OpenFiles())
    finally:
        os.close(fd)
    assert keep.exists()


def test_file_open_by_a_process_is_kept(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    held = touch(root / "clo-held.log", 5 * DAY)
    free = touch(root / "clo-free.log", 5 * DAY)
    holder = subprocess.Popen([sys.executable, "-c", f"f = open({str(held)!r}); import time; time.sleep(60)"],
                              stdout=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while (os.stat(held).st_dev, os.stat(held).st_ino) not in open_files.scan().inodes:
            assert time.time() < deadline, "the holder never opened the file"
            time.sleep(0.05)
        planned = clean_tmp.clean(target(root), dry_run=True)
        assert planned.actions == [f"rm {free}"] and planned.metrics["in_use"] == 1
        result = clean_tmp.clean(target(root), dry_run=False)
        assert held.exists() and not free.exists()
        assert "in use kept" in result.summary
    finally:
        holder.kill()
        holder.wait()


def test_sockets_and_fifos_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    root.mkdir()
    os.mkfifo(root / "clo-fifo")
    os.utime(root / "clo-fifo", (time.time() - 5 * DAY,) * 2)
    result = clean_tmp.clean(target(root), dry_run=False)
    assert (root / "clo-fifo").exists() and result.metrics["skipped_special"] == 1


def test_missing_root_warns_and_does_nothing(tmp_path: Path) -> None:
    result = clean_tmp.clean(target(tmp_path / "absent"), dry_run=False)
    assert result.status == "warning" and result.actions == [] and "does not exist" in result.summary


@pytest.mark.parametrize(("body", "problem"), [
    ('path = "/"\npattern = "clo-*"', "system root"),
    ('path = "/tmp/../"\npattern = "clo-*"', "'..'"),
    ('path = "/tmp"\npattern = "*"', "matches every file"),
    ('path = "/tmp"\npattern = "?*"', "matches every file"),
    ('path = "/tmp"\npattern = "**"', "matches every file"),
    ('path = "tmp"\npattern = "clo-*"', "must be absolute"),
    ('path = "/tmp"\npattern = "clo-*"\nolder_than = "soon"', "age"),
])
def test_check_config_refuses_dangerous_targets(body: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as err:
        parse_config(f'[[tmp]]\nname = "t"\nhost = "h"\n{body}\n')
    assert str(err.value).startswith("maintd.toml:") and "\n" not in str(err.value)
