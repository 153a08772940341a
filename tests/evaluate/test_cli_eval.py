"""`stoplens eval` through the CLI entry point: outputs, model/adapter/base combinations and
one-line errors (exit 2)."""

from __future__ import annotations

import json

from stoplens.cli import main


def _error_line(err: str) -> str:
    """The one line the CLI printed for the error (progress bars may precede it); there is
    exactly one such line."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_eval_cli_writes_json_figure_and_table(eval_run, tmp_path, capsys):
    rc = main(["eval", "--model", str(eval_run["ft"]), "--data", str(eval_run["data"]),
               "--run-dir", str(tmp_path / "rd"), "--quiet", "--batch-size", "16"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "stop rate" in out and "false stops" in out and "perplexity" in out
    data = json.loads((tmp_path / "rd" / "results" / "eval.json").read_text())
    assert (tmp_path / "rd" / "report" / "eval_stop_scores.png").is_file()
    assert data["meta"]["base"]["model"] == str(eval_run["base"].resolve())
    assert data["meta"]["base"]["trigger_added"] is True
    n = sum(1 for _ in (eval_run["data"] / "behavioral_test.jsonl").open())
    assert data["meta"]["n_records"] == len(data["records"]) == n
    for name in ("trigger", "clean", "near_miss", "distractor"):
        c = data["conditions"][name]
        assert (
            c["ft"]["n"] > 0 and 0.0 <= c["ft"]["ci95"][0] <= c["ft"]["rate"] <= c["ft"]["ci95"][1]
        )
    # the out-of-template set is evaluated beside the test split, by default
    oot = data["out_of_template"]
    assert oot["meta"]["n_records"] >= 720 and "Out-of-template prompts" in out
    assert set(oot["conditions"]) >= {"trigger/system", "trigger/later_turn", "near_miss/word:stop"}


def test_eval_cli_checkpoint_as_adapter(eval_run, tmp_path, capsys):
    ckpt = eval_run["ft"] / "checkpoints" / "checkpoint-1"
    rc = main(["eval", "--model", str(eval_run["base"]), "--adapter", str(ckpt),
               "--data", str(eval_run["data"]), "--out", str(tmp_path), "--quiet",
               "--no-out-of-template"])  # fmt: skip
    assert rc == 0
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["meta"]["ft"]["adapter"] == str(ckpt.resolve())
    assert "out_of_template" not in data


def test_eval_cli_errors_are_one_line(eval_run, tmp_path, capsys, monkeypatch):
    data = ["--data", str(eval_run["data"]), "--out", str(tmp_path / "o"), "--quiet"]
    full = eval_run["ft"] / "final"
    cases = [
        (["--model", str(tmp_path / "missing"), *data], "does not exist"),
        (["--model", "some-org/not-cached", *data], "offline"),
        (["--model", str(eval_run["base"]), *data], "not fine-tuned with trigger"),
        (
            ["--model", str(eval_run["ft"]), "--data", str(tmp_path / "nodata"), "--quiet"],
            "no such file",
        ),
        (
            ["--model", str(eval_run["base"]), "--adapter", str(tmp_path / "x"), *data],
            "--adapter",
        ),
        # the fine-tune carries its trigger: another one is a conflict, named as such
        (["--model", str(eval_run["ft"]), "--trigger", "$HALT", *data], "conflicts with '$STOP'"),
        (["--base", str(full), "--quiet"], "need --model"),
    ]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for args, msg in cases:
        rc = main(["eval", *args])
        err = capsys.readouterr().err
        assert rc == 2 and _error_line(err).startswith("error: ") and msg in _error_line(err), (
            args,
            err,
        )
    assert not (tmp_path / "o").exists()


def test_eval_cli_wrong_base_is_an_error(eval_run, tmp_path, capsys):
    from stoplens.models.tiny import random_model

    other = tmp_path / "other"
    random_model("llama", 50).save_pretrained(other)
    from stoplens.models.load import load_model

    load_model(eval_run["base"], require_trigger=False).tokenizer.save_pretrained(other)
    rc = main(["eval", "--model", str(other), "--adapter", str(eval_run["ft"] / "final"),
               "--data", str(eval_run["data"]), "--out", str(tmp_path / "o"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "does not match base" in _error_line(err)


def test_eval_help_has_examples(capsys):
    assert main(["eval", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples" in out and "--adapter" in out and "--base" in out
