"""Base types of the configuration: roles, impacts, names, the strict model base, ages."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["db", "app"]
Impact = Literal["none", "low", "medium", "high"]
Severity = Literal["ok", "warning", "critical"]
IMPACTS: tuple[str, ...] = ("none", "low", "medium", "high")
ROLES: tuple[str, ...] = ("db", "app")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
TargetName = Annotated[str, Field(pattern=NAME_PATTERN)]


def default_host() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)



_AGE = re.compile(r"^\s*(\d+)\s*(s|m|min|h|d|w)\s*$")
_AGE_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """``"365d"``, ``"12h"``, ``"30m"``, ``"2w"``, ``"90s"`` → timedelta (positive)."""
    m = _AGE.match(text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"age {text!r}: expected a positive number and a unit s/m/h/d/w, e.g. '365d'")
    return timedelta(seconds=int(m.group(1)) * _AGE_UNITS[m.group(2)])


