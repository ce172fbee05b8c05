"""``maintd logs import FILE``: a logrotate stanza file as the equivalent ``[[logs]]`` TOML.

Every directive is either mapped or named in ``Import.unmapped`` (with file:line and why):
none is dropped silently. logrotate's own defaults (rotate 0, ifempty, no maxage, no
compression, nocreate) are written out explicitly, since maintd's defaults differ; a
stanza with no create/nocreate/copytruncate gets ``create = true``, the global
``/etc/logrotate.conf`` default on Debian, Ubuntu and RHEL (not read here).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.config.logs import parse_size
from workers.errors import ConfigError

CRON = {"hourly": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 0", "monthly": "0 0 1 * *",
        "yearly": "0 0 1 1 *"}
FLAGS = {"missingok": ("missingok", True), "nomissingok": ("missingok", False), "notifempty": ("notifempty", True),
         "ifempty": ("notifempty", False), "copytruncate": ("copytruncate", True),
         "nocopytruncate": ("copytruncate", False), "nocreate": ("create", False), "dateext": ("dateext", True),
         "nodateext": ("dateext", False), "delaycompress": ("delaycompress", True),
         "nodelaycompress": ("delaycompress", False), "compress": ("compress", "gzip"),
         "nocompress": ("compress", "none")}
HARMLESS = {"sharedscripts": "maintd runs postrotate once per target, after all its logs rotated",
            "createolddir": "maintd creates a missing olddir",
            "nomail": "maintd mails nothing", "noolddir": "the default"}
_SHELL = re.compile(r"[;&|<>`$(){}*?~\\\n'\"]")
_KILL = re.compile(r"^(?:/bin/|/usr/bin/)?kill\s+-(?:s\s+)?(\w+)\s+(?:`|\$\()cat\s+(\S+?)(?:`|\))(?:\s*2>\s*/dev/null)?"
                   r"(?:\s*\|\|\s*true)?\s*$")
_IGNORED_TAIL = re.compile(r"\s*(2>\s*/dev/null|>\s*/dev/null(\s+2>&1)?|\|\|\s*true)\s*$")


@dataclass
class Import:
    entries: list[dict[str, Any]] = field(default_factory=list)
    schedule: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _script(body: list[str], where: str, out: dict[str, Any], imp: Import) -> None:
    """A postrotate script as an argv or pidfile+signal, when it is one simple command."""
    lines = [ln.strip() for ln in body if ln.strip() and not ln.strip().startswith("#")]
    text = " ".join(lines)
    bare = _IGNORED_TAIL.sub("", text) if len(lines) == 1 else text
    if len(lines) == 1 and (m := _KILL.match(text) or _KILL.match(bare)):
        out["pidfile"], out["signal"] = m.group(2), m.group(1).upper().removeprefix("SIG")
        return
    if len(lines) == 1 and not _SHELL.search(bare) and bare.startswith("/"):
        out["postrotate"] = shlex.split(bare)
        return
    imp.unmapped.append(f"{where}: postrotate script {text[:120]!r}: not one simple command; give maintd an argv "
                        "(postrotate = [\"/abs/program\", \"arg\"]) or pidfile + signal")


def _directive(words: list[str], where: str, out: dict[str, Any], imp: Import, script: list[str] | None) -> None:
    key, args = words[0].lower(), words[1:]
    try:
        if key in FLAGS:
            out[FLAGS[key][0]] = FLAGS[key][1]
        elif key in CRON:
            out["_cron"] = CRON[key]
        elif key == "rotate":
            out["rotate"] = int(args[0])
        elif key == "maxage":
            out["delete_after"] = f"{int(args[0])}d"
        elif key in ("size", "minsize"):
            out[key] = args[0].lstrip("+")
            parse_size(out[key])
        elif key == "dateformat":
            out["dateformat"] = args[0]
        elif key == "olddir":
            out["olddir"] = args[0]
        elif key == "create":
            out["create"] = True
            if args:
                imp.notes.append(f"{where}: create {' '.join(args)}: maintd gives the new file the old one's mode and owner")
        elif key == "compresscmd" and Path(args[0]).name in ("zstd", "gzip"):
            out["_cmd"] = Path(args[0]).name  # takes effect with `compress`
        elif key == "compressoptions" and re.fullmatch(r"-(\d{1,2})", args[0] if args else ""):
            out["compress_level"] = int(args[0][1:])
        elif key == "compressext" and args and args[0] in (".gz", ".zst"):
            pass  # follows from compress
        elif key == "postrotate" and script is not None:
            _script(script, where, out, imp)
        elif key in HARMLESS:
            imp.notes.append(f"{where}: {key}: {HARMLESS[key]}")
        else:
            raise KeyError(key)
    except (IndexError, ValueError) as exc:
        imp.unmapped.append(f"{where}: {' '.join(words)}: bad value ({exc})")
    except KeyError:
        imp.unmapped.append(f"{where}: {' '.join(words)}: no [[logs]] equivalent")


def parse(path: Path, host: str) -> Import:
    """Parse ``path`` (a logrotate.d file) into ``[[logs]]`` entries. Raises ConfigError with file:line."""
    try:
        raw = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    imp, targets, start = Import(), [], 0
    defaults: dict[str, Any] = {}
    stanza: dict[str, Any] | None = None
    i = 0
    while i < len(raw):
        line, where = raw[i].split("#", 1)[0].strip(), f"{path}:{i + 1}"
        i += 1
        if not line:
            continue
        if stanza is None and line.endswith("{"):
            targets, stanza, start = shlex.split(line[:-1]), dict(defaults), i
            continue
        if line == "}":
            if stanza is None:
                raise ConfigError(f"{where}: '}}' without an open stanza")
            _emit(path, targets, stanza, imp, host, f"{path}:{start}")
            stanza = None
            continue
        words = shlex.split(line)
        script = None
        if words[0] in ("postrotate", "prerotate", "firstaction", "lastaction", "preremove"):
            script = []
            while i < len(raw) and raw[i].strip() != "endscript":
                script.append(raw[i])
                i += 1
            if i >= len(raw):
                raise ConfigError(f"{where}: {words[0]} without endscript")
            i += 1
        _directive(words, where, stanza if stanza is not None else defaults, imp, script)
    if stanza is not None:
        raise ConfigError(f"{path}:{start}: stanza not closed with '}}'")
    if not imp.entries:
        raise ConfigError(f"{path}: no stanza (`/path/*.log {{ ... }}`) found")
    return imp


def _emit(path: Path, targets: list[str], stanza: dict[str, Any], imp: Import, host: str, where: str) -> None:
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", path.name).strip("-.") or "logs"
    for t in targets:
        p = Path(t)
        if not p.is_absolute():
            imp.unmapped.append(f"{where}: {t}: not an absolute path")
            continue
        if any(ch in str(p.parent) for ch in "*?["):
            imp.unmapped.append(f"{where}: {t}: a wildcard in the directory part; one [[logs]] per directory")
            continue
        name = base if not any(e["name"] == base for e in imp.entries) else f"{base}-{len(imp.entries) + 1}"
        entry: dict[str, Any] = {"name": name, "host": host, "path": str(p.parent), "pattern": p.name,
                                 "rotate": 0, "notifempty": False, "missingok": False, "delete_after": "off",
                                 "compress": "none", "compress_after": "0s", "create": True}
        entry.update({k: v for k, v in stanza.items() if not k.startswith("_")})
        if entry.get("copytruncate"):
            entry.pop("create")
        if entry["compress"] == "gzip" and "_cmd" in stanza:
            entry["compress"] = stanza["_cmd"]
        imp.entries.append(entry)
        imp.schedule[f"files.rotate_logs[{name}]"] = stanza.get("_cron", CRON["daily"])
        if "_cron" not in stanza:
            imp.notes.append(f"{where}: {t}: no daily/weekly/monthly in the stanza; daily assumed (logrotate.conf may say otherwise)")


def to_toml(imp: Import, source: Path) -> str:
    """The entries as TOML, with what could not be mapped as comments on top."""
    out = [f"# [[logs]] from {source} (maintd logs import)"]
    out += [f"# NOT MAPPED {u}" for u in imp.unmapped]
    out += [f"# note {n}" for n in imp.notes]
    for e in imp.entries:
        out.append("\n[[logs]]")
        out += [f"{k} = {json.dumps(v)}" for k, v in e.items()]
    out.append("\n[schedule]")
    out += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in imp.schedule.items()]
    return "\n".join(out) + "\n"
