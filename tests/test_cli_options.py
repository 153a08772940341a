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
    assert opts["quiet"] == (["--quiet"], [], False)
    assert opts["trust_remote_code"] == (["--trust-remote-code"], [], False)
    for name in ("model", "adapter", "base", "device", "dtype", "device_map"):
        assert opts[name][2] is None, name
    assert opts["run_dir"][2] == Path("runs/default")
    # the trigger defaults to the one the model was trained with (None until resolved)
    assert opts["trigger"] == (["--trigger"], [], None)
    assert opts["inference"] == (["--inference"], [], "merged")


@pytest.mark.parametrize("command", ["data", "eval", "train"])
def test_stage_commands_keep_their_named_flags(command: str) -> None:
    opts = _options(command)
    assert opts["run_dir"] == (["--run-dir"], [], Path("runs/default"))
    # data makes the trigger; train and eval read it from the dataset / the model
    want = "$STOP" if command == "data" else None
    assert opts["trigger"] == (["--trigger"], [], want)
    if command != "data":
        assert opts["device"] == (["--device"], [], None)
        assert opts["dtype"] == (["--dtype"], [], None)
        assert opts["trust_remote_code"] == (["--trust-remote-code"], [], False)


def test_skip_flags_are_positive_switches() -> None:
    assert _options("run")["causal"] == (["--causal"], ["--no-causal"], True)
    assert _options("run")["overwrite"] == (["--overwrite"], [], False)
    assert _options("causal")["checkpoints"] == (["--checkpoints"], ["--no-checkpoints"], True)


def test_no_double_negatives_in_any_command() -> None:
    """A bool that is off by default is a bare switch; none reads --no-no-x or --no-x/--no-no-x."""
    app = typer.main.get_command(build_app())
    for name, cmd in app.commands.items():  # type: ignore[attr-defined]
        for p in cmd.params:
            if p.param_type_name != "option" or not getattr(p, "is_flag", False):
                continue
            flags = [*p.opts, *p.secondary_opts]
            assert not any(f.startswith("--no-no-") for f in flags), (name, flags)
            if p.default is False:
                assert p.secondary_opts == [], (name, flags)
            if p.secondary_opts:
                assert not p.opts[0].startswith("--no-"), (name, flags)


def test_report_command_takes_the_run_directory() -> None:
    cmd = typer.main.get_command(build_app()).commands["report"]  # type: ignore[attr-defined]
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    assert [a.name for a in args] == ["run_dir"] and args[0].required


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
    assert common.model_spec(**none, trust_remote_code=False).trigger is None
    odd = common.model_spec(**none, trust_remote_code=False, trigger="<<STOP>>")
    assert (odd.trigger, odd.inference) == ("<<STOP>>", "merged")
    with pytest.raises(StoplensError, match="--inference 'fast'"):
        common.model_spec(**none, trust_remote_code=False, inference="fast")
    with pytest.raises(StoplensError, match="whitespace"):
        common.model_spec(**none, trust_remote_code=False, trigger="$ST OP")


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
