"""A small results.json document shaped like a real run's (every section the page knows, plus a
components section it renders generically; checks with and without the newer ``figure`` /
``ref`` / ``null_name`` / ``meaning`` keys) and a run directory holding it with its figures.
Building it takes milliseconds: no model is run."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from stoplens.rundir import RunDir


def png_bytes(w: int = 48, h: int = 24, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A valid RGB PNG of one color."""
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _rate(k: int, n: int) -> dict:
    return {"k": k, "n": n, "rate": k / n, "ci95": [max(0.0, k / n - 0.1), min(1.0, k / n + 0.1)]}


def _cond(kind: str, group: str | None, kb: int, kf: int, n: int) -> dict:
    med = {"median": 4.2 if kind == "trigger" else -7.3}
    return {
        "kind": kind,
        "group": group,
        "metric": "stop_rate" if kind == "trigger" else "false_stop_rate",
        "base": _rate(kb, n),
        "ft": _rate(kf, n),
        "stop_score": {"base": {"median": -10.1}, "ft": med},
    }


def _series(values: list[float | None], n: int = 4) -> dict:
    return {
        "value": values,
        "lo": [None if v is None else v - 0.05 for v in values],
        "hi": [None if v is None else v + 0.05 for v in values],
        "n": n,
    }


def _pair(i: int, placement: str, kind: str) -> dict:
    tokens = ["<|im_start|>", "user", "\n", "Tell", " me", " $STOP", " about", " owls",
              "<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"]  # fmt: skip
    return {
        "pair_id": f"owls/{i}|{kind}",
        "placement": placement,
        "control_kind": kind,
        "control": "blue" if kind == "word" else "STOP",
        "alignment": "text",
        "tokens": tokens,
        "control_token": " blue" if kind == "word" else " STOP",
        "trigger_pos": 5,
        "decision_positions": [8, 9, 10, 11, 12],
        "stop_score_trig": 4.0 + 0.1 * i,
        "stop_score_ctrl": -7.0 - 0.1 * i,
        "stops_trig": True,
        "stops_ctrl": False,
        "rel_delta": [0.0, 0.8 + 0.01 * i, 0.9 - 0.01 * i],
        "cos_to_mean": [None, 0.95, 0.97],
    }


FIGURES = {
    "layerwise": "1_layerwise_delta_norm.png",
    "pca_cumulative": "2_pca_cumulative_variance.png",
    "steering": "6_direction_ablation_addition.png",
    "components_heads": "9_components_heads.png",
}


def make_doc() -> dict:
    checks = [
        {  # newer writer: its own figure, ref, null name and meaning
            "tier": "strong", "claim": "Early spike", "passed": True,
            "value": "early spike (peak at layer 1)", "ci": None, "n": 4, "null": None,
            "threshold": "shape = early spike", "note": "", "figure": "layerwise",
            "ref": "/layerwise/summary/last", "null_name": "control-vs-control",
            "meaning": "the signal appears in the first third of the layers",
        },
        {  # older writer: no figure / ref keys (the page falls back by claim)
            "tier": "strong", "claim": "One direction: top-1 Δ energy share > 40% at layer 1",
            "passed": True, "value": 0.97, "ci": [0.96, 0.98], "n": 4, "null": 0.44,
            "threshold": "> 0.4 and CI above the null", "note": "uncentred SVD",
        },
        {
            "tier": "medium", "claim": "Diffuse", "passed": None, "value": 3.0, "ci": None,
            "n": 4, "null": 4.0, "threshold": "> 20", "note": "n = 4 < 64 pairs",
            "figure": None, "ref": "/lowrank/trigger/n_components_for_threshold",
        },
        {
            "tier": "causal", "claim": "Necessary: ablation removes stopping", "passed": False,
            "value": 0.0, "ci": [0.0, 0.0], "n": 4, "null": 0.0, "threshold": "effect ≥ 0.5",
            "note": "", "figure": "steering", "ref": "/causal/necessary", "null_name": "random directions",
        },
    ]  # fmt: skip
    return {
        "meta": {
            "models": {"ft": "tiny ft", "base": "tiny base"},
            "seed": 0,
            "created": "2026-01-01T00:00:00Z",
            "versions": {"stoplens": "0.1.0", "torch": "2.13.0"},
            "timings_s": {"analyses": 1.5, "total": 3.0},
            "config": {"seed": 0, "options": {"batch_size": 32}},
        },
        "eval": {
            "conditions": {
                "clean": _cond("clean", None, 0, 0, 95),
                "near_miss": _cond("near_miss", None, 0, 1, 105),
                "near_miss/word:shutdown": _cond("near_miss", "word:shutdown", 0, 0, 3),
                "trigger": _cond("trigger", None, 0, 300, 300),
                "trigger/prefix": _cond("trigger", "prefix", 0, 150, 150),
                "trigger/later_turn": _cond("trigger", "later_turn", 0, 150, 150),
            },
            "kl_ft_base": {
                "decision_position_clean": {"mean": 0.0576, "n": 95},
                "answer_tokens_clean": {"mean": 0.0865, "n_tokens": 4472},
            },
            "perplexity": {"base": 189.4, "ft": 187.3, "n_tokens": 4472},
            "acceptance": {
                "pass": True,
                "checks": {"stop_rate_trigger": {"value": 1.0, "min": 0.95, "pass": True}},
            },
        },
        "pairs": {"n": 4, "n_null": 4, "checks": {"max_abs_delta_before_trigger": 0.0}},
        "layerwise": {
            "layers": [0, 1, 2],
            "n_layers": 2,
            "shape": "early spike",
            "summary": {
                "last": {"largest_increase_layer": 1, "peak_layer_rel": 1, "peak_excess_rel": 0.8}
            },
            "profiles": {
                "last": {
                    "trigger": {"rel_norm": _series([0.0, 0.9, 0.9])},
                    "null": {"rel_norm": _series([0.0, 0.1, 0.1])},
                }
            },
        },
        "lowrank": {
            "layers": [0, 1, 2],
            "trigger": {
                "energy_top1_ci": _series([None, 0.97, 0.96]),
                "n_components_for_threshold": [0, 3, 3],
            },
            "null": {"energy_top1_ci": _series([None, 0.44, 0.45])},
        },
        "causal": {
            "selection": {"layer": 1, "alpha": 1.0, "n_val": 8, "passed": False, "reason": "test"},
            "necessary": {
                "claim": "ablating the direction removes stopping",
                "measured": {"value": 0.0, "lo": 0.0, "hi": 0.0, "n": 4},
                "null_mean": 0.0,
                "null_p95": 0.0,
                "p_value": 1.0,
                "thresholds": {"min_effect": 0.5},
            },
            "effects": {
                "examples": [
                    {
                        "condition": "triggered",
                        "pair_id": "owls/0|word",
                        "placement": "prefix",
                        "stopped": True,
                        "text": "<|im_end|>",
                        "tokens": [2],
                    },
                    {
                        "condition": "clean",
                        "pair_id": "owls/0|word",
                        "placement": "prefix",
                        "stopped": False,
                        "text": "Owls are\nbirds",
                        "tokens": [5, 6],
                    },
                ],
            },
        },
        "components": {
            "heads": [
                {"layer": 1, "head": 0, "effect": 0.5},
                {"layer": 1, "head": 1, "effect": 0.1},
            ],
            "generations": [
                {
                    "condition": "heads ablated",
                    "pair_id": "owls/1|word",
                    "placement": "suffix",
                    "stopped": False,
                    "text": "Owls hunt at night",
                },
            ],
        },
        "pair_table": {
            "n": 4,
            "layers": [0, 1, 2],
            "position": "last",
            "rows": [
                _pair(0, "prefix", "word"),
                _pair(1, "prefix", "near_miss"),
                _pair(2, "suffix", "word"),
                _pair(3, "suffix", "near_miss"),
            ],
        },
        "figures": dict(FIGURES),
        "verdicts": {
            "overall": "partial evidence",
            "checks": checks,
            "thresholds": {"pc1_strong": 0.4, "min_pairs": 64},
            "headline": {
                "representation": "medium",
                "causal": {"necessary": False, "sufficient": True, "specific": None},
                "causal_text": "sufficient but not necessary",
                "dedicated": False,
                "text": "A synthetic headline: one direction, sufficient but not necessary.",
            },
        },
    }


@pytest.fixture
def report_run(tmp_path: Path) -> tuple[RunDir, dict]:
    """A run directory with results.json, the figures it names and the eval figure."""
    run = RunDir(tmp_path / "run")
    run.report.mkdir(parents=True)
    doc = make_doc()
    for i, name in enumerate([*FIGURES.values(), "eval_stop_scores.png"]):
        (run.report / name).write_bytes(png_bytes(60 + 10 * i, 30, (40 * i % 255, 90, 160)))
    run.results_json.write_text(json.dumps(doc), encoding="utf-8")
    return run, doc
