"""``maintd logs import``: logrotate stanzas as [[logs]] TOML; unmapped directives named."""

from __future__ import annotations

import subprocess
import tomllib
from datetime import datetime
from pathlib import Path

import pytest

from tasks.core.files import rotate
from tests.test_rotate_parity import LOGROTATE, lines, snapshot, twin
from workers.cli import main
from workers.config import LogsTarget

NGINX = """\
# nginx, as Debian ships it
/var/log/nginx/*.log {
    daily
    missingok
    rotate 14
    compress
    delaycompress
    notifempty
    create 0640 www-data adm
    sharedscripts
    su www-data adm
    maxsize 1G
    prerotate
        if [ -d /etc/logrotate.d/httpd-prerotate ]; then run-parts /etc/logrotate.d/httpd-prerotate; fi
    endscript
    postrotate
        invoke-rc.d nginx rotate >/dev/null 2>&1
    endscript
}
/srv/app/app.log {
    weekly
    rotate 4
    copytruncate
    dateext
    dateformat -%Y%m%d%H
    compresscmd /usr/bin/zstd
    compress
    maxage 60
    size 100M
    olddir /srv/app/old
    postrotate
        kill -HUP `cat /run/app.pid`
    endscript
}
"""


def run_import(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    f = tmp_path / "nginx"
    f.write_text(text)
    rc = main(["logs", "import", str(f), "--host", "web1"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_import_maps_directives_and_names_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_import(tmp_path, NGINX, capsys)
    assert rc == 0
    doc = tomllib.loads(out)
    nginx, app = (LogsTarget(**e) for e in doc["logs"])  # valid [[logs]] as they stand
    assert (nginx.path, nginx.pattern, nginx.rotate, nginx.compress) == (Path("/var/log/nginx"), "*.log", 14, "gzip")
    assert nginx.missingok and nginx.notifempty and nginx.delaycompress and nginx.create
    assert nginx.delete_after == "off" and not nginx.dateext
    assert (app.copytruncate, app.dateext, app.dateformat, app.compress) == (True, True, "-%Y%m%d%H", "zstd")
    assert (app.delete_after, app.size, app.olddir) == ("60d", "100M", Path("/srv/app/old"))
    assert (app.pidfile, app.signal) == (Path("/run/app.pid"), "HUP")
    assert doc["schedule"] == {"files.rotate_logs[nginx]": "0 0 * * *", "files.rotate_logs[nginx-2]": "0 0 * * 0"}
    for what in ("su www-data adm", "maxsize 1G", "prerotate", "invoke-rc.d nginx rotate"):
        assert what in err, what
        assert "NOT MAPPED" in out and what in out
    assert f"{tmp_path}/nginx:11:" in err  # file:line


@pytest.mark.parametrize("text,message", [
    ("/x/a.log {\n rotate 2\n", ":1: stanza not closed"),
    ("rotate 2\n}\n", ":2: '}' without an open stanza"),
    ("/x/a.log {\n postrotate\n  /bin/true\n}\n", ":2: postrotate without endscript"),
    ("# nothing\n", "no stanza"),
])
def test_bad_file_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    rc, out, err = run_import(tmp_path, text, capsys)
    assert rc == 1 and out == ""
    assert err.startswith("maintd: error: ") and message in err and err.count("\n") == 1


@pytest.mark.skipif(not Path(LOGROTATE).exists(), reason="logrotate not installed")
def test_imported_stanza_rotates_like_logrotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {"logs/app.log": (lines("now"), 0), "logs/app.log.1": (lines("one"), 1),
             "logs/app.log.2.gz": (lines("two"), 2), "logs/app.log.3.gz": (lines("old"), 9),
             "logs/empty.log": (b"", 0)}
    a, b = twin(tmp_path, files)
    stanza = "rotate 3\ncreate\ncompress\ndelaycompress\nnotifempty\nmaxage 5\n"
    conf = tmp_path / "lr.conf"
    conf.write_text(f"{a}/logs/*.log {{\n{stanza}}}\n")
    assert subprocess.run([LOGROTATE, "-s", str(tmp_path / "st"), "-f", str(conf)], timeout=60).returncode == 0
    rc, out, _ = run_import(tmp_path, f"{b}/logs/*.log {{\n{stanza}}}\n", capsys)
    (entry,) = tomllib.loads(out)["logs"]
    assert rotate.run(LogsTarget(**entry), datetime.now().astimezone()).status == "ok"
    assert snapshot(a) == snapshot(b)
