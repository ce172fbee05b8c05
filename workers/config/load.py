"""Load and validate the TOML configuration.

Order: read file → TOML parse → ``${ENV}`` interpolation → ``*_file`` secrets →
strict model validation → cross-checks (duplicate names, targets named in
``[schedule]``). Every failure is one ``ConfigError`` line:
``<file>:<line>: <field path>: <problem>``. Secret values are never echoed.

Parsing knows nothing of the task catalog (it imports neither Celery nor a task module).
Task names in ``[schedule]`` and ``[tasks]`` are checked by ``check_task_names``, which the
catalog layer calls with the names it knows (``workers.catalog.validate``) at every entry
point: the CLI, and the Celery app's configuration.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from workers.config.model import Config
from workers.config.oversight import oversight_errors, oversight_task_errors
from workers.errors import ConfigError

ENV_VAR = "MAINTD_CONFIG"
GENERATED = Path(".maintd") / "maintd.toml"
_INTERP = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config, then $MAINTD_CONFIG, then ./maintd.toml, then the one `maintd up` generated."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    local = Path("maintd.toml")
    if not local.exists() and GENERATED.exists():
        return GENERATED
    return local


def _fmt_path(loc: tuple[Any, ...], raw: Any) -> str:
    """('postgres', 0, 'dsn') → 'postgres["main"].dsn' (the target's name when it has one)."""
    out, node = "", raw
    for part in loc:
        if isinstance(part, int):
            name = node[part].get("name") if isinstance(node, list) and part < len(node) and isinstance(node[part], dict) else None
            out += f'["{name}"]' if isinstance(name, str) else f"[{part}]"
        else:
            key = f'"{part}"' if "." in str(part) or " " in str(part) else str(part)
            out += f".{key}" if out else key
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out or "(top level)"


def _get(raw: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw


def _locate_nested(lines: list[str], loc: tuple[Any, ...]) -> int | None:
    """The line of ``key`` in an array of tables inside an array of tables, e.g. ("postgres", 0,
    "retention", 1, "where") → the ``where =`` line under the second ``[[postgres.retention]]``
    after the first ``[[postgres]]``."""
    if len(loc) < 4 or not (isinstance(loc[0], str) and isinstance(loc[1], int) and isinstance(loc[2], str)
                            and isinstance(loc[3], int)):
        return None
    outer = [i for i, ln in enumerate(lines) if re.match(rf"^\s*\[\[\s*{re.escape(loc[0])}\s*\]\]", ln)]
    if loc[1] >= len(outer):
        return None
    stop = outer[loc[1] + 1] if loc[1] + 1 < len(outer) else len(lines)
    inner = [i for i in range(outer[loc[1]], stop)
             if re.match(rf"^\s*\[\[\s*{re.escape(loc[0])}\.{re.escape(loc[2])}\s*\]\]", lines[i])]
    if loc[3] >= len(inner):
        return None
    head = inner[loc[3]]
    key = loc[4] if len(loc) > 4 and isinstance(loc[4], str) else None
    for i in range(head + 1, len(lines)):
        if re.match(r"^\s*\[", lines[i]):
            break
        if key and re.match(rf'^\s*"?{re.escape(key)}"?\s*=', lines[i]):
            return i + 1
    return head + 1


def _locate(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of the TOML that ``loc`` points at (1-based)."""
    lines = text.splitlines()
    nested = _locate_nested(lines, loc)
    if nested is not None:
        return nested
    section, index, keys = None, None, [p for p in loc if isinstance(p, str)]
    if loc and isinstance(loc[0], str):
        section = loc[0]
        index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    start, end = 0, len(lines)
    if section is not None:
        heads = [i for i, ln in enumerate(lines) if re.match(rf"^\s*\[\[?\s*{re.escape(section)}\s*\]\]?\s*(#.*)?$", ln)]
        if heads:
            pick = heads[index] if index is not None and index < len(heads) else heads[0]
            start = pick
            nxt = [i for i, ln in enumerate(lines) if i > pick and re.match(r"^\s*\[", ln)]
            end = nxt[0] if nxt else len(lines)
            keys = keys[1:]
    for key in reversed(keys or []):
        for i in range(start, end):
            if re.match(rf'^\s*"?{re.escape(key)}"?\s*=', lines[i]):
                return i + 1
    return start + 1 if section is not None and start < len(lines) else None


_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _url_encoder(template: str) -> Any:
    """For a URL written with ``${VAR}`` inside it: a function (position, value) → the value
    percent-encoded as its part of the URL needs (user and password: everything; path: all
    but '/'; query and fragment: everything; scheme, host and port: as is), so a password
    with '@', '#', '/' or ':' cannot change the host. None when ``template`` is not a URL
    (e.g. the whole value is one variable: it is used as given)."""
    if not _URL_SCHEME.match(template):
        return None
    flat = _INTERP.sub(lambda m: "x" * len(m.group(0)), template)  # placeholders hide no delimiter
    authority = flat.index("://") + 3
    ends = [i for i in (flat.find(c, authority) for c in "/?#") if i >= 0]
    end = min(ends) if ends else len(flat)
    at = flat.rfind("@", authority, end)
    query = flat.find("?", end)

    def encode(pos: int, value: str) -> str:
        if pos < authority or (at < pos < end) or (at < 0 and pos < end):
            return value  # scheme, host, port
        if pos < end:  # user info
            return quote(value, safe="")
        if query < 0 or pos < query:  # path
            return quote(value, safe="/")
        return quote(value, safe="")  # query, fragment

    return encode


def _interpolate(node: Any, loc: tuple[Any, ...], errors: list[tuple[tuple[Any, ...], str]]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, (*loc, k), errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, (*loc, i), errors) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node
    encode = _url_encoder(node)

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            value = os.environ[name]
        elif default is not None:
            value = default
        else:
            errors.append((loc, f"environment variable {name} is not set"))
            return ""
        return encode(m.start(), value) if encode else value

    return _INTERP.sub(sub, node)


def _read_secret_files(node: Any, loc: tuple[Any, ...], base: Path, errors: list[tuple[tuple[Any, ...], str]]) -> Any:
    """``password_file = "/run/secrets/x"`` → ``password = <file content>``."""
    if isinstance(node, list):
        return [_read_secret_files(v, (*loc, i), base, errors) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.endswith("_file") and isinstance(value, str):
            target = key[: -len("_file")]
            if target in node:
                errors.append(((*loc, key), f"give either '{target}' or '{key}', not both"))
                continue
            path = (base / value).expanduser()
            try:
                out[target] = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                errors.append(((*loc, key), f"cannot read secret file {str(path)!r}: {exc.strerror}"))
        else:
            out[key] = _read_secret_files(value, (*loc, key), base, errors)
    return out


def _cross_checks(cfg: Config) -> list[tuple[tuple[Any, ...], str]]:
    errors: list[tuple[tuple[Any, ...], str]] = []
    seen: dict[str, str] = {}
    for t in cfg.all_targets():
        if t.name in seen:
            idx = getattr(cfg, t.kind).index(t)
            errors.append(((t.kind, idx, "name"), f"duplicate target name {t.name!r} (also a {seen[t.name]} target)"))
        seen.setdefault(t.name, t.kind)
    for key in cfg.schedule:
        _task, _, rest = key.partition("[")
        if rest and not any(t.name == rest.rstrip("]") for t in cfg.all_targets()):
            errors.append((("schedule", key), f"unknown target {rest.rstrip(']')!r}"))
    errors.extend(oversight_errors(cfg))
    return errors


def _task_name_errors(cfg: Config, known: Collection[str]) -> list[tuple[tuple[Any, ...], str]]:
    errors: list[tuple[tuple[Any, ...], str]] = []
    for key in cfg.schedule:
        task = key.partition("[")[0]
        if task not in known:
            errors.append((("schedule", key), f"unknown task {task!r} (see `maintd tasks`)"))
    for key in cfg.tasks:
        if key not in known:
            errors.append((("tasks", key), f"unknown task {key!r} (see `maintd tasks`)"))
    errors.extend(oversight_task_errors(cfg, known))
    return errors


def _error_line(text: str, source: str, raw: Any, errors: list[tuple[tuple[Any, ...], str]]) -> ConfigError:
    loc, msg = errors[0]
    line = _locate(text, loc)
    where = f"{source}:{line}" if line else source
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(f"{where}: {_fmt_path(loc, raw)}: {msg}{more}")


def check_task_names(cfg: Config, known: Collection[str]) -> None:
    """ConfigError (file:line, field) for a task name in ``[schedule]``/``[tasks]`` not in ``known``."""
    errors = _task_name_errors(cfg, known)
    if errors:
        raise located_error(cfg, errors)


def located_error(cfg: Config, errors: list[tuple[tuple[Any, ...], str]]) -> ConfigError:
    """One ConfigError line (``file:line: field: problem``) for checks made after parsing
    (those that need the task catalog): ``errors`` are (field path, problem) pairs."""
    source, text = cfg.origin or ("maintd.toml", "")
    raw = tomllib.loads(text) if text else {}
    return _error_line(text, source, raw, errors)


def parse_config(text: str, source: str = "maintd.toml", base: Path | None = None) -> Config:
    """Parse and validate config text. Raises ConfigError with one line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{source}:{m.group(1)}" if m else source
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{where}: TOML syntax error: {msg}" + (f" (column {m.group(2)})" if m else "")) from None
    errors: list[tuple[tuple[Any, ...], str]] = []
    data = _interpolate(raw, (), errors)
    data = _read_secret_files(data, (), base or Path("."), errors)
    if not errors:
        try:
            cfg = Config.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False):
                loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "union["))))
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = f"unknown key {loc[-1]!r}" if loc else "unknown key"
                elif err["type"] in ("literal_error", "enum"):
                    msg = f"{msg.lower()}"
                elif err["type"] == "missing":
                    msg = f"missing required key {loc[-1]!r}" if loc else "missing required key"
                    loc = loc[:-1]
                elif err["type"] == "string_pattern_mismatch":
                    msg = ("must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
                           f" (got {str(_get(raw, loc))!r})")
                errors.append((loc, msg))
        else:
            errors = _cross_checks(cfg)
            if not errors:
                return cfg.with_origin(source, text)
    raise _error_line(text, source, raw, errors)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    p = config_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found (pass --config or set {ENV_VAR})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc}") from None
    return parse_config(text, str(p), p.parent)


def this_host(config: Config) -> str:
    """This machine's name for host-pinned queues: ``$MAINTD_HOST`` (set by ``maintd worker
    --host``) or ``[maintd] host``."""
    return os.environ.get("MAINTD_HOST") or config.maintd.host


@lru_cache(maxsize=1)
def get_config() -> Config:
    """The process-wide configuration (from $MAINTD_CONFIG or the defaults)."""
    return load_config()


def reset_config() -> None:
    get_config.cache_clear()
