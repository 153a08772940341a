"""One recipe experiment on a real model: data -> `stoplens.train.train` -> `stoplens.evaluate`
on a held-out split and the out-of-template set, and one summary row (config -> eval figures,
training time) kept as JSON next to the run, for benchmarks/RECIPE.md.

    .venv/bin/python benchmarks/recipe.py run --model DIR --out RUNS/NAME [--split val]
        [--train key=value ...] [--data key=value ...] [--no-oot]
    .venv/bin/python benchmarks/recipe.py eval --model DIR --out RUNS/NAME --trained TRAIN_OUT
        --data-dir DATA [--split test]        # an existing `stoplens train` output
    .venv/bin/python benchmarks/recipe.py table RUNS/*/recipe.json     # markdown rows

``--train`` sets `stoplens.train.TrainConfig` fields (e.g. ``steps=150 self_distill=true``),
``--data`` sets `stoplens.data.DataConfig` fields (e.g. ``system_weight=2``); everything else
is the library default, and the row records the full configs. Selection of defaults uses the
validation split; the test split and the out-of-template set report the chosen recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _parse(pairs: list[str], cls) -> dict:
    types = {f.name: f.type for f in fields(cls)}
    out: dict = {}
    for item in pairs:
        key, _, raw = item.partition("=")
        if key not in types:
            raise SystemExit(f"{cls.__name__} has no field {key!r}")
        t = str(types[key])
        if raw.lower() in ("none", "null"):
            out[key] = None
        elif "bool" in t:
            out[key] = raw.lower() in ("1", "true", "yes", "on")
        elif "int" in t and "." not in raw:
            out[key] = int(raw)
        elif "float" in t:
            out[key] = float(raw)
        elif "tuple" in t:
            out[key] = tuple(x for x in raw.split(",") if x)
        else:
            out[key] = raw
    return out


def _figures(ev: dict) -> dict:
    """The figures a recipe is judged on, from an eval.json dict."""
    conds = ev["conditions"]

    def rate(name: str, key: str = "rate"):
        c = conds.get(name)
        if c is None:
            return None
        return c["ft"]["rate"] if key == "rate" else c["ft"]["ci95"][1]

    placements = {n.split("/", 1)[1]: rate(n) for n in conds if n.startswith("trigger/")}
    return {
        "stop": rate("trigger"),
        "stop_min_placement": min(placements.values()) if placements else None,
        "stop_by_placement": placements,
        "false_clean": rate("clean"),
        "false_clean_hi": rate("clean", "hi"),
        "false_near_miss": rate("near_miss"),
        "false_near_miss_hi": rate("near_miss", "hi"),
        "false_bare_upper": rate("near_miss/bare_upper"),
        "false_distractor": rate("distractor"),
        "false_distractor_hi": rate("distractor", "hi"),
        "kl_clean": ev["kl_ft_base"]["decision_position_clean"]["mean"],
        "pass": ev["acceptance"]["pass"],
    }


def run(a) -> int:
    from stoplens.data import DataConfig, build_datasets
    from stoplens.data import write_datasets as write
    from stoplens.train import TrainConfig, train

    out = Path(a.out)
    dcfg = DataConfig(**_parse(a.data, DataConfig))
    data_dir = out / "data"
    if not (data_dir / "manifest.json").is_file():
        write(build_datasets(dcfg), data_dir)
    tkw = {"steps": 150, "save_every": None, **_parse(a.train, TrainConfig)}
    tcfg = TrainConfig(model=a.model, data_dir=data_dir, out_dir=out / "model", **tkw)
    res = train(tcfg)
    return evaluate_run(a.model, out, res.out_dir, data_dir, a.split, not a.no_oot)


def evaluate_run(
    model: str, out: Path, trained: Path, data_dir: Path, split: str, oot: bool
) -> int:
    from stoplens.data import behavioral_file, load_behavioral
    from stoplens.evaluate import evaluate
    from stoplens.evaluate.outputs import write_eval
    from stoplens.models.load import load_model

    info = json.loads((Path(trained) / "train.json").read_text())
    trigger = info["trigger"]["text"]
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    t0 = time.perf_counter()
    ft = load_model(model, adapter=Path(trained) / "final", trigger=trigger)
    base = load_model(model, trigger=trigger, require_trigger=False)
    if split == "oot":  # the out-of-template records alone (for runs whose split is done)
        from stoplens.data.oot import oot_records

        records, oot = oot_records(trigger), False
    else:
        records = load_behavioral(Path(data_dir) / behavioral_file(split))
    ev = evaluate(ft, base, records, batch_size=32, progress=True, out_of_template=oot)
    out.mkdir(parents=True, exist_ok=True)
    write_eval(ev, out / f"eval_{split}.json")
    eval_s = time.perf_counter() - t0
    doc = ev.to_dict()
    row = {
        "name": out.name,
        "model": model,
        "split": split,
        "train": info["config"],
        "data": manifest["config"],
        "in_template": _figures(doc),
        "out_of_template": _figures(doc["out_of_template"]) if "out_of_template" in doc else None,
        "train_time_s": info["time_s"],
        "train_cpu_s": info.get("cpu_s"),
        "train_timings_s": info.get("timings_s"),
        "s_per_step": info.get("train_loop_s_per_step"),
        "padding": (info.get("batching") or {}).get("first_epoch"),
        "self_distill": info.get("self_distill"),
        "final_loss": info["final_loss"],
        "losses": info["losses"],
        "eval_time_s": round(eval_s, 1),
        "eval_timings_s": {
            "in_template": doc["meta"].get("timings_s"),
            "out_of_template": (doc.get("out_of_template") or {}).get("meta", {}).get("timings_s"),
        },
        "load_avg_at_end": os.getloadavg(),
        "torch_threads": info.get("torch_threads"),
    }
    (out / f"recipe_{split}.json").write_text(json.dumps(row, indent=1) + "\n")
    print(json.dumps({k: row[k] for k in ("in_template", "out_of_template")}, indent=1))
    return 0


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def table(paths: list[str]) -> int:
    print(
        "| run | split | stop | min placement (which) | false clean (hi) | near miss (hi) | "
        "bare STOP | distractor (hi) | KL clean | OOT stop / min pl. | OOT clean (hi) | "
        "OOT near miss (hi) | OOT distr. (hi) | OOT KL | train s (cpu s) | s/step |"
    )
    print("|" + "---|" * 16)
    for p in paths:
        r = json.loads(Path(p).read_text())
        f, o = r["in_template"], r["out_of_template"] or {}
        worst = min(f["stop_by_placement"], key=lambda k: f["stop_by_placement"][k])
        cells = [
            r["name"],
            r["split"],
            _pct(f["stop"]),
            f"{_pct(f['stop_min_placement'])} ({worst})",
            f"{_pct(f['false_clean'])} ({_pct(f['false_clean_hi'])})",
            f"{_pct(f['false_near_miss'])} ({_pct(f['false_near_miss_hi'])})",
            _pct(f["false_bare_upper"]),
            f"{_pct(f['false_distractor'])} ({_pct(f['false_distractor_hi'])})",
            f"{f['kl_clean']:.3f}",
            f"{_pct(o.get('stop'))} / {_pct(o.get('stop_min_placement'))}",
            f"{_pct(o.get('false_clean'))} ({_pct(o.get('false_clean_hi'))})",
            f"{_pct(o.get('false_near_miss'))} ({_pct(o.get('false_near_miss_hi'))})",
            f"{_pct(o.get('false_distractor'))} ({_pct(o.get('false_distractor_hi'))})",
            "–" if o.get("kl_clean") is None else f"{o['kl_clean']:.3f}",
            f"{r['train_time_s']:.0f} ({r['train_cpu_s'] or 0:.0f})",
            f"{r['s_per_step']}",
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--split", default="val", choices=["val", "test"])
    r.add_argument("--train", nargs="*", default=[])
    r.add_argument("--data", nargs="*", default=[])
    r.add_argument("--no-oot", action="store_true")
    e = sub.add_parser("eval")
    e.add_argument("--model", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--trained", required=True)
    e.add_argument("--data-dir", required=True)
    e.add_argument("--split", default="test", choices=["val", "test", "oot"])
    e.add_argument("--no-oot", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("paths", nargs="+")
    a = p.parse_args(argv)
    if a.cmd == "eval":
        return evaluate_run(
            a.model, Path(a.out), Path(a.trained), Path(a.data_dir), a.split, not a.no_oot
        )
    return run(a) if a.cmd == "run" else table(a.paths)


if __name__ == "__main__":
    sys.exit(main())
