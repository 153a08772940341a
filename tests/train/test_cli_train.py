"""`stoplens train` through the CLI entry point: a run, --help, and one-line errors (exit 2)."""

from __future__ import annotations

import json

from stoplens.cli import main


def _error_line(err: str) -> str:
    """The one line the CLI printed for the error (progress bars may precede it); there is
    exactly one such line."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_train_cli_run_and_resume_error(tmp_path, base_dir, data_dir, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", str(base_dir), "--data", str(data_dir), "--out", str(out)]
    rc = main(
        [
            *args,
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--save-every",
            "1",
            "--quiet",
            "--lora-r",
            "4",
        ]
    )
    assert rc == 0
    info = json.loads((out / "train.json").read_text())
    assert info["steps"] == 2 and info["config"]["lora_r"] == 4
    assert "trained behavioral (lora)" in capsys.readouterr().out
    rc = main(
        [
            "train",
            "--model",
            str(base_dir),
            "--data",
            str(data_dir),
            "--out",
            str(tmp_path / "e"),
            "--resume",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and _error_line(err).startswith("error: --resume: no complete checkpoint")


def test_train_cli_errors_are_one_line(tmp_path, base_dir, data_dir, capsys):
    cases = [
        (["--model", str(tmp_path / "missing"), "--data", str(data_dir)], "does not exist"),
        (["--model", str(base_dir), "--data", str(tmp_path / "nodata")], "no such file"),
        (["--model", str(base_dir), "--run-dir", str(tmp_path / "empty")], "no dataset"),
        (["--model", str(base_dir), "--data", str(data_dir), "--regime", "x"], "--regime"),
        (["--model", str(base_dir), "--data", str(data_dir), "--trigger", "$A B"], "whitespace"),
    ]
    for extra, msg in cases:
        rc = main(["train", *extra, "--out", str(tmp_path / "o"), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and _error_line(err).startswith("error: ") and msg in err, (extra, err)
    assert not (tmp_path / "o").exists()


def test_train_help_has_examples(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples" in out and "--resume" in out and "--self-distill" in out
