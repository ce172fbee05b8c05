"""Synthetic series with a known answer (the capacity forecast's accuracy table and tests):
each returns (days, values, true days until ``limit`` from the last point, or None)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Series = tuple[list[float], list[float], float | None]


def _days(n: int, span: float) -> np.ndarray:
    return np.linspace(0.0, span, n)


def linear(limit: float = 100.0, n: int = 90, span: float = 90.0, seed: int = 0) -> Series:
    x = _days(n, span)
    y = 20.0 + 0.5 * x  # 0.5 a day from 20: at day 90 it is 65
    return list(x), list(y), (limit - y[-1]) / 0.5


def noisy(limit: float = 100.0, n: int = 90, span: float = 90.0, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    x = _days(n, span)
    y = 20.0 + 0.5 * x + rng.normal(0.0, 2.0, n)  # σ 2 around the line
    return list(x), list(y), (limit - (20.0 + 0.5 * x[-1])) / 0.5


def step(limit: float = 100.0, n: int = 90, span: float = 90.0, seed: int = 0) -> Series:
    x = _days(n, span)
    y = 20.0 + 0.3 * x + np.where(x >= 60.0, 15.0, 0.0)  # a bulk import of 15 on day 60
    rng = np.random.default_rng(seed)
    y = y + rng.normal(0.0, 0.2, n)
    true_now = 20.0 + 0.3 * x[-1] + 15.0
    return list(x), list(y), (limit - true_now) / 0.3


def flat(limit: float = 100.0, n: int = 90, span: float = 90.0, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    x = _days(n, span)
    return list(x), list(50.0 + rng.normal(0.0, 1.0, n)), None


def shrinking(limit: float = 100.0, n: int = 90, span: float = 90.0, seed: int = 0) -> Series:
    x = _days(n, span)
    return list(x), list(80.0 - 0.2 * x), None


CASES: dict[str, Callable[..., Series]] = {"linear": linear, "step": step, "noisy": noisy, "flat": flat,
                                           "shrinking": shrinking}
