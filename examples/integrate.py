#!/usr/bin/env python3
"""One task of the example sweep: integrate sin(a x) exp(-b x) over [0, 1] with Simpson's rule.

Deliberately plain Python (no numpy) so the example runs anywhere the worker runs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math


def simpson(f, lo: float, hi: float, intervals: int) -> float:  # noqa: ANN001 - any float function
    h = (hi - lo) / intervals
    total = f(lo) + f(hi)
    total += 4 * sum(f(lo + (2 * k - 1) * h) for k in range(1, intervals // 2 + 1))
    total += 2 * sum(f(lo + 2 * k * h) for k in range(1, intervals // 2))
    return total * h / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", type=float, required=True)
    parser.add_argument("--b", type=float, required=True)
    parser.add_argument("--intervals", type=int, default=2000)
    args = parser.parse_args()
    value = simpson(lambda x: math.sin(args.a * x) * math.exp(-args.b * x), 0.0, 1.0, args.intervals)
    print(json.dumps({"a": args.a, "b": args.b, "integral": value}))


if __name__ == "__main__":
    main()
