#!/usr/bin/env python3
"""A two-stage pipeline with dependencies: many Monte Carlo estimates of π, then one task that combines them.

Both stages go in ONE `submit_many` call: the combining task names the simulations by their place in the list
(`after_index`), so it waits in W until they have all succeeded (and would be cancelled if one failed).

    python examples/pipeline.py --access STATE_DIR/access.toml --out /shared/dir

The same file is the program the tasks run (`simulate` and `combine`); the output directory must be visible to
the workers (a shared file system on a cluster, any directory on one machine).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import sys
from pathlib import Path

from tqhpc import Client, TaskSpec

HERE = Path(__file__).resolve()


def simulate(seed: int, samples: int, out: Path) -> None:
    """Stage 1: the fraction of random points of the unit square inside the quarter circle."""
    rng = random.Random(seed)
    inside = sum(1 for _ in range(samples) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
    (out / f"part-{seed}.json").write_text(json.dumps({"seed": seed, "inside": inside, "samples": samples}))


def combine(out: Path) -> None:
    """Stage 2: pool every part into one estimate; it only runs once all parts exist."""
    parts = [json.loads(p.read_text()) for p in sorted(out.glob("part-*.json"))]
    inside = sum(p["inside"] for p in parts)
    samples = sum(p["samples"] for p in parts)
    print(json.dumps({"parts": len(parts), "samples": samples, "pi": 4 * inside / samples}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step")
    step = sub.add_parser("simulate")
    step.add_argument("--seed", type=int, required=True)
    step.add_argument("--samples", type=int, required=True)
    step.add_argument("--out", type=Path, required=True)
    step = sub.add_parser("combine")
    step.add_argument("--out", type=Path, required=True)
    parser.add_argument("--access", default=None, help="the server's access.toml (default: $TQHPC_ACCESS)")
    parser.add_argument("--out", type=Path, default=Path("pipeline-out"), help="directory for the parts")
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    if args.step == "simulate":
        simulate(args.seed, args.samples, args.out)
        return 0
    if args.step == "combine":
        combine(args.out)
        return 0

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.json"):
        old.unlink()
    run = f"{shlex.quote(sys.executable)} {shlex.quote(str(HERE))}"
    stage1 = [
        TaskSpec(f"{run} simulate --seed {seed} --samples {args.samples} --out {shlex.quote(str(out))}", name="mc-pi")
        for seed in range(args.parts)
    ]
    stage2 = TaskSpec(
        f"{run} combine --out {shlex.quote(str(out))}", name="mc-pi-combine", after_index=tuple(range(args.parts))
    )
    with Client(args.access) as client:
        ids = client.submit_many([*stage1, stage2])
        combiner = ids[-1]
        print(f"submitted {args.parts} simulations ({ids[0]}..{ids[-2]}) and the combining task {combiner}, "
              f"which waits for them: {client.task(combiner).status.label}")  # fmt: skip
        results = client.wait(ids, timeout=args.timeout)
        if not all(r.ok for r in results):
            for r in results:
                if not r.ok:
                    print(f"task {r.task_id}: {r.status.label} ({r.reason})", file=sys.stderr)
            return 1
        stdout = b"".join(c.data for c in client.logs(combiner) if c.stream == "O")
    answer = json.loads(stdout)
    error = abs(answer["pi"] - math.pi)
    print(f"π ≈ {answer['pi']:.5f} from {answer['parts']} parts, {answer['samples']} samples (error {error:.5f})")
    return 0 if answer["parts"] == args.parts and error < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
