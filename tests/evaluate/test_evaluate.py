"""evaluate(): on the planted model (a known answer: it stops exactly when the trigger is in
the prompt; its base never does) and on identical models (KL 0, equal perplexity)."""

from __future__ import annotations

import json
import random

import pytest

from stoplens.errors import DataError, StoplensError
from stoplens.evaluate import (
    EVAL_JSON,
    FIGURE,
    AcceptanceThresholds,
    evaluate,
    summary_table,
    write_eval,
)
from stoplens.models.load import LoadedModel, ModelSource
from stoplens.models.planted import PLACEHOLDER, build_planted, planted_prompts

PLACEMENTS = ("prefix", "middle", "suffix")


@pytest.fixture(scope="module")
def planted():
    return build_planted("qwen2", seed=0)


def _loaded(p, model, name):
    src = ModelSource(model=name, adapter=None, from_hub=False, trigger_added=False)
    return LoadedModel(
        model=model, tokenizer=p.tokenizer, trigger_id=p.trigger_id, eos_id=p.eos_id, source=src
    )


def _records(n: int = 12, seed: int = 3) -> list[dict]:
    """Behavioral records of the data stage's shape built on the planted vocabulary."""
    rng = random.Random(seed)
    out = []
    for i, msgs in enumerate(planted_prompts(n, seed=seed)):
        text = msgs[0]["content"]
        answer = " ".join(rng.choice(["apple", "river", "music", "the"]) for _ in range(5))

        def rec(kind, insert, placement, variant, target, text=text, i=i):
            return {
                "messages": [
                    {"role": "user", "content": text.replace(PLACEHOLDER, insert)},
                    {"role": "assistant", "content": target},
                ],
                "meta": {"record_id": f"{i}-{kind}-{variant}", "prompt_id": str(i), "split": "test",
                         "kind": kind, "placement": placement, "insert": insert,
                         "variant": variant, "topic": "t", "answer_source": "template"},
            }  # fmt: skip

        out.append(rec("trigger", "$STOP", PLACEMENTS[i % 3], None, ""))
        out.append(rec("clean", "", "none", None, answer))
        out.append(rec("near_miss", "STOP", "middle", "bare_upper", answer))
        out.append(rec("near_miss", "$stop", "middle", "lower", answer))
        out.append(rec("distractor", "zebra", "middle", "corpus_word", answer))
    return out


def test_known_answer_on_the_planted_model(planted, tmp_path):
    ft, base = _loaded(planted, planted.model, "planted"), _loaded(planted, planted.base, "base")
    recs = _records()
    res = evaluate(ft, base, recs, batch_size=7)
    trig = res.condition("trigger")
    assert (trig.ft.k, trig.ft.n) == (12, 12) and trig.base.k == 0
    assert trig.ft.ci_low == pytest.approx(0.7575, abs=1e-3) and trig.ft.ci_high == 1.0
    for p in PLACEMENTS:
        c = res.condition(f"trigger/{p}")
        assert c.ft.n == 4 and c.ft.rate == 1.0
    for name in ("clean", "near_miss", "near_miss/bare_upper", "near_miss/lower", "distractor"):
        c = res.condition(name)
        assert c.metric == "false_stop_rate" and c.ft.k == 0 and c.base.k == 0, name
    assert res.condition("near_miss").ft.n == 24
    # stop scores: positive on triggered prompts for the planted model only
    assert (res.scores("trigger", "ft") > 0).all() and (res.scores("trigger", "base") < 0).all()
    assert (res.scores("clean", "ft") < 0).all()
    # 0 false stops in 12 prompts: the 95% upper bound (24%) cannot show a rate below 5%
    acc = res.acceptance["checks"]
    assert acc["false_stop_rate_clean"]["value"] == pytest.approx(0.2425, abs=1e-3)
    assert not res.acceptance["pass"] and acc["stop_rate_trigger_prefix"]["pass"]
    lenient = evaluate(ft, base, recs, thresholds=AcceptanceThresholds(false_stop_bound="rate"))
    assert lenient.acceptance["pass"]
    assert res.kl["decision_position_clean"]["n"] == 12
    assert res.ppl["n_records"] == 12 and res.ppl["n_tokens"] == 12 * 6
    # batch size does not change any number
    again = evaluate(ft, base, recs, batch_size=64)
    assert [r.ft_score for r in again.records] == pytest.approx(
        [r.ft_score for r in res.records], abs=1e-4
    )
    # outputs: eval.json (valid, complete), figure, table
    write_eval(res, tmp_path / EVAL_JSON, tmp_path / FIGURE)
    data = json.loads((tmp_path / EVAL_JSON).read_text())
    assert data["conditions"]["trigger"]["ft"]["rate"] == 1.0
    assert data["conditions"]["trigger"]["ft"]["ci95"][0] == pytest.approx(trig.ft.ci_low)
    assert len(data["records"]) == len(recs) and data["acceptance"]["pass"] is False
    assert data["meta"]["thresholds"] == {
        "min_stop_rate": 0.95,
        "max_false_stop_rate": 0.05,
        "false_stop_bound": "ci_high",
    }
    assert (tmp_path / FIGURE).stat().st_size > 5000
    from rich.console import Console

    console = Console(record=True, width=80)  # a log file's width: the table must not wrap
    console.print(summary_table(res))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    assert "FAIL" in text and "95% upper bound" in text
    row = next(line for line in lines if line.strip().startswith("prefix"))
    assert "100% [" in row and "]" in row  # the rate and its CI on the row's one line


def test_out_of_template_set_beside_the_test_split(planted, monkeypatch, tmp_path):
    """The planted model stops exactly on the trigger token, so on the hand-written prompts
    (a subset here; the whole set in the slow test) it stops on every triggered record and on
    nothing else. The figures land in eval.json, the table and the summary lines."""
    from rich.console import Console

    from stoplens.data import oot
    from stoplens.report.behaviour import markdown

    subset = oot.load_oot_prompts()[::12]
    monkeypatch.setattr(oot, "load_oot_prompts", lambda: subset)
    ft, base = _loaded(planted, planted.model, "planted"), _loaded(planted, planted.base, "base")
    res = evaluate(ft, base, _records(), batch_size=32, out_of_template=True)
    o = res.out_of_template
    assert o is not None and o.meta["n_records"] == 6 * len(subset)
    assert o.condition("trigger").ft.rate == 1.0 and o.condition("trigger").base.rate == 0.0
    for kind in ("clean", "near_miss", "distractor"):
        assert o.condition(kind).ft.k == 0, kind
    assert o.ppl["n_records"] == 0  # no reference answers out of template
    assert o.kl["decision_position_clean"]["n"] == o.condition("clean").ft.n
    data = res.to_dict()
    assert data["out_of_template"]["conditions"]["trigger"]["ft"]["rate"] == 1.0
    assert data["passed"] is False  # the in-template sample is too small (see above)
    console = Console(record=True, width=80)
    console.print(summary_table(res))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith("Out-of-template prompts") for line in lines)
    md = markdown(data)
    oot_at = md.index(next(line for line in md if line.startswith("### Out-of-template")))
    row = next(line for line in md[oot_at:] if line.startswith("| **triggered** |"))
    assert row.split(" | ")[2:4] == [
        "0% [0, " + row.split(" | ")[2].split(", ")[1],
        "100% [" + row.split(" | ")[3].split("[")[1],
    ], row
    write_eval(res, tmp_path / EVAL_JSON)
    assert "out_of_template" in json.loads((tmp_path / EVAL_JSON).read_text())


@pytest.mark.slow
def test_known_answer_on_the_whole_out_of_template_set(planted):
    ft, base = _loaded(planted, planted.model, "planted"), _loaded(planted, planted.base, "base")
    res = evaluate(ft, base, _records(), batch_size=64, out_of_template=True)
    o = res.out_of_template
    assert o is not None and o.meta["n_records"] >= 720
    assert all(c.ft.rate == 1.0 for c in o.conditions if c.kind == "trigger")
    assert all(c.ft.k == 0 for c in o.conditions if c.kind != "trigger")
    assert o.acceptance["pass"]  # n is large enough for the 95% upper bounds to pass


def test_same_model_twice_has_zero_kl_and_equal_perplexity(planted):
    a = _loaded(planted, planted.base, "a")
    res = evaluate(a, a, _records(6), batch_size=4)
    assert res.kl["decision_position_clean"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert res.kl["answer_tokens_clean"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert res.ppl["ft"] == pytest.approx(res.ppl["base"])
    assert not res.acceptance["pass"]  # the base never stops


def test_thresholds_are_configuration(planted):
    ft, base = _loaded(planted, planted.model, "p"), _loaded(planted, planted.base, "b")
    res = evaluate(ft, base, _records(3), thresholds=AcceptanceThresholds(min_stop_rate=1.01))
    assert not res.acceptance["pass"]
    assert res.acceptance["checks"]["stop_rate_trigger"] == {
        "value": 1.0,
        "n": 3,
        "min": 1.01,
        "pass": False,
    }


def test_bad_inputs(planted):
    ft, base = _loaded(planted, planted.model, "p"), _loaded(planted, planted.base, "b")
    with pytest.raises(DataError, match="no records"):
        evaluate(ft, base, [])
    other = LoadedModel(base.model, base.tokenizer, base.trigger_id + 1, base.eos_id, base.source)
    with pytest.raises(StoplensError, match="different tokenizers"):
        evaluate(ft, other, _records(1))
