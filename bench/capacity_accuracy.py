"""Capacity forecast accuracy on synthetic series with a known answer (tasks/core/reports/
synthetic.py): per shape, over many noise seeds, the projected days until the limit against
the truth. Prints the README's table. Pure; no database.

    .venv/bin/python bench/capacity_accuracy.py [--seeds 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.core.reports import synthetic, trend  # noqa: E402

SHAPES = {"linear": "20 + 0.5/day, 90 daily points", "step": "20 + 0.3/day, +15 on day 60, σ 0.2",
          "noisy": "20 + 0.5/day, σ 2", "flat": "50, σ 1", "shrinking": "80 − 0.2/day"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args()
    print("| series | truth (days to 100) | median projected | worst error | within 10 % |")
    print("|---|---|---|---|---|")
    for name, make in synthetic.CASES.items():
        got, errors, ok = [], [], 0
        truth = None
        for seed in range(args.seeds):
            days, values, truth = make(seed=seed)
            fit = trend.fit(days, values)
            d = fit.days_until(100.0) if fit else None
            if truth is None:
                ok += d is None
                got.append(float("inf") if d is None else d)
                continue
            err = abs((d if d is not None else float("inf")) - truth) / truth
            errors.append(err)
            ok += err <= 0.1
            got.append(d if d is not None else float("inf"))
        med = statistics.median(got)
        shown = "never" if med == float("inf") else f"{med:.1f}"
        print(f"| {name} ({SHAPES[name]}) | {'never' if truth is None else f'{truth:.1f}'} | {shown} |"
              f" {'-' if not errors else f'{100 * max(errors):.1f} %'} | {ok}/{args.seeds} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
