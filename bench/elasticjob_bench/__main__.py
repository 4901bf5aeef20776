"""`python -m elasticjob_bench [--quick] [--only b1,b3] [--b4-jobs 1000] [--b4-runs 2]`: run the benchmarks.

Writes `bench/results/<date>.json`, PNG plots next to it and the table in `docs/benchmarks.md`.
Every figure is the median of several runs, compared as a ratio with a baseline measured in the
same run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elasticjob_bench import machine, report

RESULTS = machine.REPO / "bench" / "results"


def merge(earlier: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """Today's results over an earlier run's of the same day and machine.

    Sections measured now replace the earlier ones, except that B4 keeps earlier rows of sizes not
    measured now. The time per part adds up over the runs.
    """
    if earlier.get("machine") != results["machine"]:
        return results
    took = {**earlier.get("seconds_by_part", {}), **results["seconds_by_part"]}
    merged = {**earlier, **results, "seconds_by_part": took, "seconds": round(sum(took.values()), 1)}
    merged["runs"] = [*earlier.get("runs", []), *results.get("runs", [])]
    merged["quick"] = bool(earlier.get("quick")) or bool(results.get("quick"))
    if "b4" in earlier and "b4" in results:
        rows = {r["jobs"]: r for r in [*earlier["b4"]["rows"], *results["b4"]["rows"]]}
        merged["b4"] = {**results["b4"], "rows": [rows[n] for n in sorted(rows)]}
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m elasticjob_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sizes, runs and variants")
    parser.add_argument(
        "--only",
        default="b1,b2,b3,b4,b5b,b6,b7",
        help="comma-separated benchmarks: b1, b2 (b1, b2 and b5 share their jobs: any runs all), b3, b4, b5b, b6, b7",
    )
    parser.add_argument(
        "--b4-jobs",
        default="",
        help="comma-separated B4 sizes instead of the default (200; 200,1000 without --quick); rows of "
        "other sizes measured earlier the same day are kept",
    )
    parser.add_argument(
        "--b4-runs", type=int, default=0, help="B4 runs per size, each on a fresh cluster (1; 3 without --quick)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and plots go")
    parser.add_argument("--doc", type=Path, default=machine.REPO / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    chosen = {b.strip().lower() for b in args.only.split(",") if b.strip()}
    unknown = chosen - {"b1", "b2", "b3", "b4", "b5b", "b6", "b7"}
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}: choose from b1, b2, b3, b4, b5b, b6, b7")
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": args.quick,
        "machine": machine.describe(),
    }
    run_args = ["--quick"] if args.quick else []
    run_args += [f"--only {','.join(sorted(chosen))}"] + ([f"--b4-jobs {args.b4_jobs}"] if args.b4_jobs else [])
    run_args += [f"--b4-runs {args.b4_runs}"] if args.b4_runs else []
    results["runs"] = [{"date": results["date"], "args": " ".join(run_args)}]
    took: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        took[name] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()

    if "b3" in chosen:
        from elasticjob_bench import rdzv

        if args.quick:  # stock at 256 agents does not finish within the join timeout on 2 cores: left out
            sizes = {"stock": [8, 64, 128], "elasticjob": [8, 64, 128, 256]}
        else:
            sizes = {variant: [8, 32, 64, 128, 256] for variant in rdzv.VARIANTS}
        results["b3"] = rdzv.run(sizes, repeats=3, timeout=60 if args.quick else 180)
        lap("b3")
    if "b5b" in chosen:
        from elasticjob_bench import store_load

        results["b5b"] = store_load.run(repeats=2 if args.quick else 3)
        lap("b5b")
    if "b4" in chosen:
        from elasticjob_bench import operator_scale

        jobs = [int(n) for n in args.b4_jobs.split(",") if n] or ([200] if args.quick else [200, 1000])
        results["b4"] = operator_scale.run(jobs, repeats=args.b4_runs or (1 if args.quick else 3))
        lap("b4")
    if chosen & {"b1", "b2"}:  # B1 and B2 share their jobs: either runs both
        from elasticjob_bench import launch, recovery

        with launch.Operator() as op:
            lap("cluster")
            results.update(recovery.run(3 if args.quick else 5, op, stock_torchrun=not args.quick))
            lap("b1+b2")
    if "b6" in chosen:
        from elasticjob_bench import failover

        results["b6"] = failover.run(3 if args.quick else 5)
        lap("b6")
    if "b7" in chosen:
        from elasticjob_bench import kueue_latency

        results["b7"] = kueue_latency.run(3 if args.quick else 5)
        lap("b7")
    results["seconds"] = round(time.monotonic() - started, 1)
    results["seconds_by_part"] = took
    args.out.mkdir(parents=True, exist_ok=True)
    stem = results["date"][:10]
    path = args.out / f"{stem}.json"
    if path.exists():  # another run the same day (e.g. `--only b3`): keep its other sections
        results = merge(json.loads(path.read_text()), results)
    path.write_text(json.dumps(results, indent=2) + "\n")
    plots = report.plots(results, args.out, stem)
    args.doc.write_text(report.markdown(results, path, plots, args.doc.parent))
    print(f"wrote {path}, {args.doc} and {len(plots)} plot(s) in {results['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
