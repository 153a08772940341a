"""Run every benchmark with sizes that fit in about 10 minutes on a 2-core CPU (`make bench`),
each in its own process; each one prints its table and rewrites its section of
benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/run_all.py [--quick] [--device cuda] [--model-config qwen2.5-1.5b]

``--model-config`` overrides every benchmark's default model (tiny/small on CPU); on a GPU
machine use e.g. ``--device cuda --model-config qwen2.5-1.5b``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (script, extra arguments, options it understands). The CPU defaults: capture_overhead on
# `small` (8 layers, d=512), the others on `tiny` (4 layers, d=128). build_tiny.py (the
# embedded pair's build time; CPU only) runs when present.
_ALL = ("--device", "--dtype", "--threads", "--model-config", "--quick", "--no-write")
BENCHMARKS = [
    ("capture_overhead.py", ["--reps", "5"], _ALL),
    ("shared_prefix.py", [], _ALL),
    ("vs_baselines.py", [], _ALL),
    ("scaling.py", [], _ALL),
    ("suite_stages.py", [], _ALL),
    ("build_tiny.py", [], ("--threads", "--no-write")),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="each benchmark's --quick sizes")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--threads", default=None)
    p.add_argument("--model-config", default=None)
    p.add_argument("--only", default=None, help="comma-separated script names (no .py)")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    given: dict[str, list[str]] = {}
    for flag, val in (
        ("--device", a.device),
        ("--dtype", a.dtype),
        ("--threads", a.threads),
        ("--model-config", a.model_config),
    ):
        if val is not None:
            given[flag] = [flag, val]
    if a.quick:
        given["--quick"] = ["--quick"]
    if a.no_write:
        given["--no-write"] = ["--no-write"]
    only = set(a.only.split(",")) if a.only else None
    summary = []
    t_all = time.perf_counter()
    for script, extra, accepts in BENCHMARKS:
        if only is not None and script.removesuffix(".py") not in only:
            continue
        if not (HERE / script).is_file():
            continue
        if script == "build_tiny.py" and a.device not in (None, "cpu"):
            continue  # a CPU-budget benchmark
        common = [x for flag, args in given.items() if flag in accepts for x in args]
        cmd = [sys.executable, str(HERE / script), *extra, *common]
        print(f"\n=== {script} {' '.join(extra + common)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        summary.append((script, rc, time.perf_counter() - t0))
    print("\n=== summary")
    for script, rc, t in summary:
        print(f"{script:22s} {'ok' if rc == 0 else f'FAILED (exit {rc})':18s} {t:7.1f} s")
    print(f"{'total':22s} {'':18s} {time.perf_counter() - t_all:7.1f} s")
    print(f"results: {HERE / 'RESULTS.md'}")
    return 0 if all(rc == 0 for _, rc, _ in summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())
