"""Robust trends for capacity planning (pure, numpy only).

The slope is Theil–Sen's (the median of the slopes between every pair of points; robust to
up to ~29 % outliers), with Sen's 95 % confidence interval on it; the fit error is the
residuals' robust standard deviation (1.4826 × MAD). A *level shift* (a bulk import, a
migration, a cleanup: a one-time jump far outside the series' day-to-day changes) would tilt
any whole-series fit, so the fit starts after the most recent one when enough points remain.

Days until a limit are counted from the fit's value at the newest point; a flat (slope's
interval includes zero) or shrinking series never reaches its limit (``None``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_POINTS = 400  # pairs grow with n²: a long series is thinned evenly first
MIN_POINTS = 4
STEP_SIGMAS = 8.0  # a jump this many robust σ of the day-to-day changes is a level shift
MAD_TO_SIGMA = 1.4826
Z95 = 1.96


@dataclass(frozen=True)
class Trend:
    slope_per_day: float
    slope_low: float  # Sen's 95 % interval on the slope
    slope_high: float
    intercept: float  # at x = 0 (days since the series' first point)
    sigma: float  # robust σ of the residuals
    last_x: float  # day of the newest point
    current: float  # the fit at the newest point
    points: int  # used by the fit (after the last level shift)
    shift_at: float | None  # day of the most recent level shift, if one was found

    def at(self, x: float) -> float:
        return self.current + self.slope_per_day * (x - self.last_x)

    def band(self, x: float) -> tuple[float, float]:
        """A ~95 % band for the value at day ``x``: the slope's interval widened by the fit error."""
        dt = x - self.last_x
        ends = (self.current + self.slope_low * dt, self.current + self.slope_high * dt)
        return min(ends) - Z95 * self.sigma, max(ends) + Z95 * self.sigma

    @property
    def growing(self) -> bool:
        """The slope is above zero and so is its interval's low end (a flat series that wobbles
        upwards is not growth)."""
        return self.slope_per_day > max(1e-12, abs(self.current) * 1e-9) and self.slope_low > 0

    def days_until(self, limit: float) -> float | None:
        """Days from the newest point until the fit reaches ``limit`` (0: already there)."""
        if self.current >= limit:
            return 0.0
        if not self.growing:
            return None
        return (limit - self.current) / self.slope_per_day


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= MAX_POINTS:
        return x, y
    idx = np.linspace(0, len(x) - 1, MAX_POINTS).round().astype(int)
    return x[idx], y[idx]


def last_shift(x: np.ndarray, y: np.ndarray) -> int | None:
    """Index of the first point after the most recent level shift, or None."""
    if len(y) < 2 * MIN_POINTS:
        return None
    dy = np.diff(y)
    med = float(np.median(dy))
    mad = float(np.median(np.abs(dy - med))) * MAD_TO_SIGMA
    scale = max(mad, 1e-9 * max(1.0, float(np.max(np.abs(y)))))
    jumps = np.nonzero(np.abs(dy - med) > STEP_SIGMAS * scale)[0]
    for j in jumps[::-1]:
        start = int(j) + 1
        if len(y) - start >= MIN_POINTS:
            return start
    return None


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(slope, intercept, slope_low, slope_high): Theil–Sen with Sen's 95 % interval."""
    i, j = np.triu_indices(len(x), k=1)
    dx = x[j] - x[i]
    keep = dx > 0
    slopes = np.sort((y[j] - y[i])[keep] / dx[keep])
    if len(slopes) == 0:
        return 0.0, float(np.median(y)), 0.0, 0.0
    slope = float(np.median(slopes))
    intercept = float(np.median(y - slope * x))
    n, count = len(x), len(slopes)
    c = Z95 * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    lo = int(max(0, min(count - 1, math.floor((count - c) / 2.0))))
    hi = int(max(0, min(count - 1, math.ceil((count + c) / 2.0))))
    return slope, intercept, float(slopes[lo]), float(slopes[hi])


def fit(days: list[float], values: list[float]) -> Trend | None:
    """The trend of a series (``days``: time in days, ascending); None with too few points."""
    if len(days) < MIN_POINTS:
        return None
    x, y = _thin(np.asarray(days, dtype=float), np.asarray(values, dtype=float))
    start = last_shift(x, y)
    shift_at = float(x[start]) if start is not None else None
    if start is not None:
        x, y = x[start:], y[start:]
    slope, intercept, lo, hi = theil_sen(x, y)
    residuals = y - (intercept + slope * x)
    sigma = float(np.median(np.abs(residuals - np.median(residuals)))) * MAD_TO_SIGMA
    last = float(x[-1])
    return Trend(slope, lo, hi, intercept, sigma, last, intercept + slope * last, len(x), shift_at)
