"""files.audit_permissions on a real tree: each kind of finding, the score and its
threshold, symlinks never followed, and fix=true (chmod 600 of secrets only, planned in dry run)."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from tasks.core.files import audit
from workers.config import AuditTarget, parse_config
from workers.errors import ConfigError


def tree(root: Path) -> Path:
    (root / "app" / "conf").mkdir(parents=True)
    (root / "app" / "conf" / "settings.toml").write_text("x")
    (root / "app" / "tmp").mkdir()
    os.chmod(root / "app" / "tmp", 0o1777)  # world-writable WITH sticky: fine
    (root / "app" / "drop").mkdir()
    os.chmod(root / "app" / "drop", 0o777)  # world-writable without sticky
    (root / "app" / "open.log").write_text("x")
    os.chmod(root / "app" / "open.log", 0o666)
    (root / "app" / "bin").mkdir()
    (root / "app" / "bin" / "helper").write_text("#!/bin/sh\n")
    os.chmod(root / "app" / "bin" / "helper", 0o4755)
    (root / "app" / "bin" / "allowed").write_text("#!/bin/sh\n")
    os.chmod(root / "app" / "bin" / "allowed", 0o2755)
    for name, mode in ((".env", 0o644), ("server.key", 0o640), ("ok.pem", 0o600)):
        (root / "app" / "conf" / name).write_text("secret")
        os.chmod(root / "app" / "conf" / name, mode)
    return root / "app"


def target(root: Path, **kw: object) -> AuditTarget:
    return AuditTarget(name="app", host="h", paths=[root], setuid_allow=["*/bin/allowed"], **kw)  # type: ignore[arg-type]


def test_each_kind_is_found_and_scored(tmp_path: Path) -> None:
    app = tree(tmp_path)
    result = audit.audit(target(app), dry_run=False)
    m = result.metrics
    found = {(f["kind"], Path(f["path"]).name) for f in m["findings"]}
    assert found == {("world_writable", "drop"), ("world_writable", "open.log"), ("setuid", "helper"),
                     ("secret_readable", ".env"), ("secret_readable", "server.key")}
    # 100 - min(2*10, 20) - 15 - min(2*10, 30) = 45
    assert m["score"] == 45 and result.status == "critical"
    assert "security score 45/100 (below 80)" in result.summary
    assert "setuid/setgid: " + str(app / "bin" / "helper") in result.summary
    assert result.actions == [] and stat.S_IMODE(os.stat(app / "conf" / ".env").st_mode) == 0o644


def test_clean_tree_scores_100_and_warning_above_threshold(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    assert audit.audit(target(tmp_path / "a"), dry_run=False).status == "ok"
    os.chmod(tmp_path / "a" / "f", 0o666)
    result = audit.audit(target(tmp_path / "a"), dry_run=False)
    assert result.metrics["score"] == 90 and result.status == "warning"


def test_owners_configured_are_checked(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    me = pwd.getpwuid(os.getuid()).pw_name
    assert audit.audit(target(tmp_path / "a", owners=[me]), dry_run=False).metrics["counts"]["owner"] == 0
    other = audit.audit(target(tmp_path / "a", owners=["nobody-in-particular"]), dry_run=False)
    assert other.metrics["counts"]["owner"] == 1 and other.metrics["score"] == 95


def test_symlinks_never_followed_and_excludes_honoured(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.key").write_text("s")
    os.chmod(outside / "leak.key", 0o644)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    (root / "link.key").symlink_to(outside / "leak.key")
    (root / "skip").mkdir()
    (root / "skip" / "x.pem").write_text("s")
    os.chmod(root / "skip" / "x.pem", 0o644)
    result = audit.audit(target(root, exclude=["*/skip"]), dry_run=False, fix=True)
    assert result.metrics["findings_total"] == 0 and result.status == "ok"
    assert stat.S_IMODE(os.stat(outside / "leak.key").st_mode) == 0o644


def test_fix_only_chmods_secret_files_and_dry_run_lists_them(tmp_path: Path) -> None:
    app = tree(tmp_path)
    planned = audit.audit(target(app), dry_run=True, fix=True)
    assert sorted(planned.actions) == sorted([f"chmod 600 {app / 'conf' / '.env'}", f"chmod 600 {app / 'conf' / 'server.key'}"])
    assert stat.S_IMODE(os.stat(app / "conf" / ".env").st_mode) == 0o644
    done = audit.audit(target(app), dry_run=False, fix=True)
    assert sorted(done.actions) == sorted(planned.actions) and done.metrics["fixed"] == 2
    assert stat.S_IMODE(os.stat(app / "conf" / ".env").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(app / "conf" / "server.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(app / "open.log").st_mode) == 0o666  # not a secret: reported, never changed
    assert stat.S_IMODE(os.stat(app / "bin" / "helper").st_mode) == 0o4755
    after = audit.audit(target(app), dry_run=False)
    assert after.metrics["counts"]["secret_readable"] == 0 and after.metrics["score"] == 65


def test_configured_secret_paths_and_summary_cap(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    for i in range(30):
        (root / f"f{i}").write_text("x")
        os.chmod(root / f"f{i}", 0o666)
    secret = tmp_path / "elsewhere.conf"
    secret.write_text("pw")
    os.chmod(secret, 0o644)
    result = audit.audit(target(root, secret_paths=[secret]), dry_run=False)
    assert result.metrics["counts"] == {"world_writable": 30, "setuid": 0, "secret_readable": 1, "owner": 0}
    assert result.summary.count("world-writable: ") == 20 and "(+11 more in metrics)" in result.summary
    assert len(result.metrics["findings"]) == 31


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="must be absolute"):
        parse_config('[[audit]]\nname = "a"\nhost = "h"\npaths = ["etc"]\n')
    with pytest.raises(ConfigError, match=r"audit\[\"a\"\]\.min_score"):
        parse_config('[[audit]]\nname = "a"\nhost = "h"\npaths = ["/etc"]\nmin_score = 120\n')
