"""CLI conventions: the global options accepted before or after any command, ``--version``,
and shell completion (argcomplete: the completion library for argparse, kept by its authors
since 2012; bash, zsh and fish from one hook)."""

from __future__ import annotations

import argparse
from importlib import metadata
from typing import Any

SHELLS = ("bash", "zsh", "fish")


def version_line() -> str:
    def of(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "unknown"

    return f"maintd {of('maintd')} (celery {of('celery')}, celery-redbeat {of('celery-redbeat')})"


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--config`` and ``-v``. On the top parser with their defaults; on every command parser
    with SUPPRESS, so ``maintd check-config --config x.toml`` sets them and ``maintd --config
    x.toml check-config`` is not undone by the command parser's defaults."""
    default: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--config", help="config file (default: $MAINTD_CONFIG, ./maintd.toml)",
                        **default).completer = _files  # type: ignore[attr-defined]
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG", **default)


def accept_global_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every command (and nested command) parser the global options."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share one parser
                add_global_options(sub, top=False)
                accept_global_options_everywhere(sub)


def _files(prefix: str, **_: Any) -> list[str]:
    from argcomplete.completers import FilesCompleter

    return list(FilesCompleter(allowednames=("toml",))(prefix))


def task_names(prefix: str, **_: Any) -> list[str]:
    try:
        from workers.catalog import load_catalog

        return sorted(n for n, s in load_catalog().items() if n.startswith(prefix) and not s.internal)
    except Exception:  # noqa: BLE001 - completion must never print an error into the shell
        return []


def target_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """Targets of the task being completed (its kind), from the config named so far."""
    try:
        from workers.catalog import load_catalog
        from workers.config import load_config

        config = load_config(getattr(parsed_args, "config", None))
        spec = load_catalog().get(getattr(parsed_args, "task", ""))
        if spec is None or spec.target_kind is None:
            return []
        return sorted(t.name for t in getattr(config, spec.target_kind) if t.name.startswith(prefix))
    except Exception:  # noqa: BLE001 - completion must never print an error into the shell
        return []


def enable_completion(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request if this is one (``_ARGCOMPLETE`` set: argcomplete
    prints the candidates and exits); otherwise return at once."""
    import argcomplete

    argcomplete.autocomplete(parser)


def completion_script(shell: str) -> str:
    import argcomplete

    return str(argcomplete.shellcode(["maintd"], shell=shell))
