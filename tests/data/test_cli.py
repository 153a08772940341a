"""`stoplens data` through the CLI entry point: a good run, defaults, and every bad input
(one-line error, exit code 2, nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stoplens.cli import main
from stoplens.data import FILES, MANIFEST_FILE

SMALL_ARGS = ["--n-prompts", "40", "--n-documents", "10"]


def test_good_run_writes_everything_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d"
    rc = main(["data", "--out", str(out), "--seed", "4", *SMALL_ARGS])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {*FILES, MANIFEST_FILE}
    text = capsys.readouterr().out
    for needle in ("behavioral_train.jsonl", "later_turn", "distinct prompts", "5-gram", "$STOP"):
        assert needle in text


def test_default_out_is_under_the_run_dir(tmp_path: Path) -> None:
    rc = main(["data", "--run-dir", str(tmp_path / "run"), "--trigger", "#HALT", *SMALL_ARGS])
    assert rc == 0
    manifest = (tmp_path / "run" / "data" / MANIFEST_FILE).read_text()
    assert '"trigger": "#HALT"' in manifest


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "--help"]) == 0
    text = capsys.readouterr().out
    assert "Examples" in text and "--control-kinds" in text and "--overwrite" in text


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--trigger", ""], "trigger is empty"),
        (["--trigger", "   "], "trigger is empty"),
        (["--trigger", "$ST OP"], "whitespace"),
        (["--n-prompts", "4"], "--n-prompts"),
        (["--n-prompts", "100000"], "--n-prompts"),
        (["--n-documents", "1"], "--n-documents"),
        (["--control-kinds", "word,banana"], "unknown control kind"),
        (["--control-kinds", ","], "--control-kinds"),
    ],
)
def test_bad_input_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    out = tmp_path / "d"
    rc = main(["data", "--out", str(out), *SMALL_ARGS, *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err
    assert err.count("\n") == 1  # one line
    assert not out.exists() or not any(out.iterdir())
    assert not any(tmp_path.iterdir())  # not even a temp directory is left


def test_non_empty_out_dir_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main(["data", "--out", str(out), *SMALL_ARGS])
    assert rc == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert main(["data", "--out", str(out), "--overwrite", *SMALL_ARGS]) == 0
    assert {p.name for p in out.iterdir()} == {*FILES, MANIFEST_FILE}


def test_unwritable_out_dir_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        rc = main(["data", "--out", str(out), *SMALL_ARGS])
        assert rc == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "--out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert blocker.read_text() == "x"
