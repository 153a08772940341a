"""Scaling of the streaming path (`stream_deltas` of benchmarks/streaming.py: statistics + Δ
shards on disk) with the number of pairs: time and peak memory, each size in a fresh
subprocess so the peaks are independent. Peak memory must stay flat as pairs grow; time must
grow linearly (time per pair and the R² of a linear fit are printed).

Memory is the resident set (RSS) sampled every 5 ms during the stream, minus the RSS just
before it (model, tokenizer and the encoded pairs are already loaded); the RSS after the
stream once glibc has returned its free heap (malloc_trim), minus the same baseline (what is
really still held: the statistics); the process's high-water mark (ru_maxrss); on a GPU,
torch's peak allocation.

The children run with glibc's mmap threshold fixed at 1 MiB (``MALLOC_MMAP_THRESHOLD_``), so
large freed buffers go back to the OS and RSS follows the memory in use. With glibc's default
(dynamic) threshold, ``--malloc-default``, RSS also holds freed heap that glibc keeps, which
wanders by tens of MiB from run to run (measured here: 14-66 MiB for the same stream) while
the memory in use stays flat.

    .venv/bin/python benchmarks/scaling.py [--quick] [--sizes 64,256,1000] [--model-config tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common as C
import torch

FULL = [64, 256, 1000, 2500, 5000, 10000]
QUICK = [64, 256, 1000, 2000]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _rss())

    def stop(self) -> int:
        self._done.set()
        self.join()
        self.peak = max(self.peak, _rss())
        return self.peak


def _rss_after_trim() -> int | None:
    """RSS after glibc's malloc_trim(0): the memory still in use, without the freed heap that
    glibc keeps (which makes raw RSS wander by tens of MiB between chunks). None off glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return _rss()


def child(a: argparse.Namespace) -> None:
    from streaming import stream_deltas

    C.apply_threads(a.threads)
    dtype = C.resolve_dtype(a.dtype, a.device)
    tok = C.make_tokenizer(a.seed)
    ep = C.make_pairs(tok, a.n, a.seed)
    model = C.build_model(a.model_config, len(tok), a.device, dtype, a.seed)
    pos = ep.decision_positions("post")
    cuda = torch.device(a.device).type == "cuda"
    # warm-up on a few pairs (first-call allocations and kernels are not part of the sweep)
    stream_deltas(model, ep.trig_ids[:8], ep.ctrl_ids[:8], pos[:8], progress=False)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(dir=a.tmp) as tmp:
        before = _rss()
        sampler = _Sampler()
        sampler.start()
        t0, c0 = time.perf_counter(), time.process_time()
        stats = stream_deltas(
            model,
            ep.trig_ids,
            ep.ctrl_ids,
            pos,
            pad_id=tok.pad_token_id,
            batch_size=a.batch_size,
            chunk_pairs=a.chunk_pairs,
            shard_dir=Path(tmp) / "deltas",
            progress=False,
        )
        if cuda:
            torch.cuda.synchronize()
        t_stream = time.perf_counter() - t0
        c_stream = time.process_time() - c0
        t1 = time.perf_counter()
        stats.svd_energy_share()
        stats.pca_explained_ratio()
        t_final = time.perf_counter() - t1
        peak = sampler.stop()
        trimmed = _rss_after_trim()
        disk = sum(f.stat().st_size for f in (Path(tmp) / "deltas").iterdir())
    Ly, P, d = len(stats.layers), stats.n_positions, stats.d_model
    out = {
        "n": a.n,
        "tokens": sum(map(len, ep.trig_ids)) * 2,
        "t_stream": t_stream,
        "t_finalise": t_final,
        "cpu_stream": c_stream,
        "rss_before": before,
        "rss_peak_stream": peak,
        "rss_increment": peak - before,
        "rss_trimmed_increment": None if trimmed is None else trimmed - before,
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "stats_bytes": stats.nbytes(),
        "disk_bytes": disk,
        "in_memory_delta_bytes": a.n * Ly * P * d * 4,
        "cuda_peak": torch.cuda.max_memory_allocated() if cuda else None,
        "layers": Ly,
        "positions": P,
        "d_model": d,
        "threads": torch.get_num_threads(),
    }
    print("RESULT " + json.dumps(out), flush=True)


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x; returns (a, b, R²)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    a0 = my - b * mx
    ss_res = sum((y - a0 - b * x) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return a0, b, 1 - ss_res / ss_tot if ss_tot > 0 else 1.0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    C.add_common_args(p, default_config="tiny")
    p.add_argument("--sizes", default=None, help="comma-separated pair counts")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--chunk-pairs", type=int, default=256)
    p.add_argument("--tmp", default=None, help="folder for the temporary shards")
    p.add_argument(
        "--malloc-default", action="store_true",
        help="keep glibc's dynamic mmap threshold (RSS then includes freed heap glibc keeps)",
    )  # fmt: skip
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a)
        return {}
    threads = C.apply_threads(a.threads)
    info = C.machine(a.device, threads)
    sizes = [int(x) for x in a.sizes.split(",")] if a.sizes else (QUICK if a.quick else FULL)
    results = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--child", "--n", str(n), "--threads",
               str(torch.get_num_threads()), "--model-config", a.model_config,
               "--device", a.device, "--dtype", a.dtype, "--seed", str(a.seed),
               "--batch-size", str(a.batch_size), "--chunk-pairs", str(a.chunk_pairs)]  # fmt: skip
        if a.tmp:
            cmd += ["--tmp", a.tmp]
        env = dict(os.environ)
        if not a.malloc_default:
            env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"scaling: the run with {n} pairs failed (exit {proc.returncode})")
        r = json.loads(line[0][len("RESULT ") :])
        results.append(r)
        print(
            f"  n={n}: {r['t_stream']:.2f} s, +{r['rss_increment'] / 2**20:.1f} MiB RSS",
            flush=True,
        )

    mib = 2**20
    a0, b, r2 = _fit([r["n"] for r in results], [r["t_stream"] for r in results])
    ca, cb, cr2 = _fit([r["n"] for r in results], [r["cpu_stream"] for r in results])
    cuda = results[0]["cuda_peak"] is not None
    rows = []
    for r in results:
        row = [
            r["n"],
            r["t_stream"],
            1e3 * r["t_stream"] / r["n"],
            r["cpu_stream"],
            1e3 * r["cpu_stream"] / r["n"],
            r["t_finalise"],
            r["rss_increment"] / mib,
            "n/a" if r["rss_trimmed_increment"] is None else r["rss_trimmed_increment"] / mib,
            r["rss_peak_stream"] / mib,
            r["ru_maxrss"] / mib,
            r["stats_bytes"] / mib,
            r["in_memory_delta_bytes"] / mib,
            r["disk_bytes"] / mib,
        ]
        if cuda:
            row.append(r["cuda_peak"] / mib)
        rows.append(row)
    headers = [
        "pairs", "stream s", "ms / pair", "CPU s", "CPU ms / pair", "SVD+PCA s", "peak RSS increment MiB",
        "in use after stream (trimmed) MiB",
        "peak RSS MiB", "ru_maxrss MiB", "statistics MiB", "all Δs in memory would be MiB",
        "shards on disk MiB",
    ]  # fmt: skip
    if cuda:
        headers.append("CUDA peak MiB")
    tbl = C.table(headers, rows)
    big = [r for r in results if r["n"] >= 4 * a.chunk_pairs] or results[-1:]
    incs = [r["rss_increment"] / mib for r in big]
    per_pair = [r["t_stream"] / r["n"] for r in big]
    cpu_pair = [r["cpu_stream"] / r["n"] for r in big]
    live = [r["rss_trimmed_increment"] for r in big if r["rss_trimmed_increment"] is not None]
    lines = [
        f"linear fit: wall time = {a0:.2f} s + {1e3 * b:.3f} ms x pairs, R² = {r2:.4f}; "
        f"CPU time (process, insensitive to other load when threads = 1) = {ca:.2f} s + "
        f"{1e3 * cb:.3f} ms x pairs, R² = {cr2:.4f}",
        f"time per pair for n >= {big[0]['n']}: wall {1e3 * min(per_pair):.3f}-"
        f"{1e3 * max(per_pair):.3f} ms, CPU {1e3 * min(cpu_pair):.3f}-{1e3 * max(cpu_pair):.3f} ms",
        f"peak RSS increment for n >= {big[0]['n']}: {min(incs):.1f}-{max(incs):.1f} MiB while "
        f"all Δs in memory would grow to {results[-1]['in_memory_delta_bytes'] / mib:.0f} MiB",
    ]
    _, slope, _ = _fit([r["n"] for r in results], [r["rss_increment"] / mib for r in results])
    per_k = results[-1]["in_memory_delta_bytes"] / results[-1]["n"] * 1000 / mib
    lines.append(
        f"peak RSS increment vs pairs, linear fit slope: {1000 * slope:+.2f} MiB per 1,000 "
        f"pairs (holding all Δs in memory: +{per_k:.2f} MiB per 1,000 pairs)"
    )
    if live:
        lines.append(
            f"memory still in use after the stream (RSS after malloc_trim minus before) for "
            f"n >= {big[0]['n']}: {min(live) / mib:.1f}-{max(live) / mib:.1f} MiB"
        )
    r0 = results[0]
    setup = (
        f"model `{a.model_config}` (random weights, {r0['layers'] - 1} layers, d={r0['d_model']}), "
        f"{r0['layers']} residual layers x {r0['positions']} positions, batch {a.batch_size} "
        f"sequences, chunks of {a.chunk_pairs} pairs, Gram kept (float64), Δ shards written "
        f"(float32); each size in a fresh process after an 8-pair warm-up; glibc mmap threshold "
        + ("default (dynamic)" if a.malloc_default else "fixed at 1 MiB")
    )
    print(setup)
    print(tbl)
    print("\n".join(lines))
    if not a.no_write:
        cmd = " ".join(["benchmarks/scaling.py", *(argv if argv is not None else sys.argv[1:])])
        body = (
            f"## scaling\n\n`{cmd}`\n\n{C.machine_lines(info)}\n\n{setup}.\n\n{tbl}\n\n"
            + "\n".join(f"- {x}" for x in lines)
            + "\n"
        )
        C.write_section(f"scaling:{a.model_config}:{a.device}", body)
    return {"results": results, "r2": r2, "r2_cpu": cr2}


if __name__ == "__main__":
    main()
