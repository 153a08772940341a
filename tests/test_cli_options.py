"""The options the subcommands share (declared once in `stoplens.cli._common`): every
command keeps its flags and defaults, and the builders of the pipeline's option objects
check and parse what the user typed. No model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from stoplens.cli import _common as common
from stoplens.cli import build_app
from stoplens.errors import StoplensError
from stoplens.pipeline import ANALYSES


def _options(command: str) -> dict[str, tuple[list[str], list[str], object]]:
    cmd = typer.main.get_command(build_app()).commands[command]  # type: ignore[attr-defined]
    return {
        p.name: (list(p.opts), list(p.secondary_opts), p.default)
        for p in cmd.params
        if p.param_type_name == "option" and p.name
    }


@pytest.mark.parametrize("command", ["analyze", "causal", "run"])
def test_analysis_commands_keep_their_shared_flags(command: str) -> None:
    opts = _options(command)
    assert opts["control_kind"] == (["--control-kind"], [], "word")
    assert opts["batch_size"] == (["--batch-size"], [], 32)
    assert opts["seed"] == (["--seed"], [], 0)
    assert opts["quiet"] == (["--quiet"], ["--no-quiet"], False)
    assert opts["trust_remote_code"] == (
        ["--trust-remote-code"],
        ["--no-trust-remote-code"],
        False,
    )
    for name in ("model", "adapter", "base", "device", "dtype", "device_map"):
        assert opts[name][2] is None, name
    assert opts["run_dir"][2] == Path("runs/default")


@pytest.mark.parametrize("command", ["data", "eval", "train"])
def test_stage_commands_keep_their_named_flags(command: str) -> None:
    opts = _options(command)
    assert opts["run_dir"] == (["--run-dir"], [], Path("runs/default"))
    assert opts["trigger"] == (["--trigger"], [], "$STOP")
    if command != "data":
        assert opts["device"] == (["--device"], [], None)
        assert opts["dtype"] == (["--dtype"], [], None)
        assert opts["trust_remote_code"] == (["--trust-remote-code"], [], False)


def test_model_spec_checks_every_local_path(tmp_path: Path) -> None:
    none = dict(model=None, adapter=None, base=None, device=None, dtype=None, device_map=None)
    spec = common.model_spec(
        **{**none, "model": "org/model", "base": str(tmp_path), "device": "cpu",
           "dtype": "float32"},
        trust_remote_code=True,
    )  # fmt: skip
    assert (spec.model, spec.base, spec.knowledge) == ("org/model", str(tmp_path), None)
    assert (spec.device, spec.dtype, spec.trust_remote_code) == ("cpu", "float32", True)
    with pytest.raises(StoplensError, match="--knowledge"):
        common.model_spec(**none, trust_remote_code=False, knowledge=str(tmp_path / "missing"))


def test_analyze_options_parse_and_validate() -> None:
    opts = common.analyze_options("near_miss", 8, 3, True, only="logit_lens", layers="1-3")
    assert opts.only == ("logit-lens",) and opts.layers == (1, 2, 3)
    assert (opts.control_kind, opts.batch_size, opts.seed, opts.progress) == (
        "near_miss",
        8,
        3,
        False,
    )
    defaults = common.analyze_options("word", 32, 0, False, checkpoints=False)
    assert defaults.only == ANALYSES and defaults.layers is None and defaults.n_pairs is None
    assert defaults.causal and not defaults.checkpoints and defaults.progress
    with pytest.raises(StoplensError, match="control kind"):
        common.analyze_options("nonsense", 32, 0, False)
    with pytest.raises(StoplensError, match="--n-pairs"):
        common.analyze_options("word", 32, 0, False, n_pairs=1)


@pytest.mark.parametrize("command", ["causal", "run"])
def test_component_suite_flag_is_positive(command: str) -> None:
    """`--components/--no-components` (on by default), never a double negative."""
    assert _options(command)["components"] == (["--components"], ["--no-components"], True)
    assert not common.analyze_options("word", 32, 0, False, components=False).components
