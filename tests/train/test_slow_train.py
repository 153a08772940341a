"""Slow end-to-end training runs in subprocesses: two processes under torchrun (gloo on CPU),
and a run killed with SIGKILL that resumes from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from stoplens.errors import StoplensError
from stoplens.models.load import load_model
from stoplens.train import list_checkpoints

ENTRY = "import sys\nfrom stoplens.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path, base_dir, data_dir):
    script = tmp_path / "entry.py"
    script.write_text(ENTRY)
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(script), "train", "--model", str(base_dir), "--data", str(data_dir),
        "--out", str(out), "--steps", "4", "--batch-size", "3", "--save-every", "2",
        "--device", "cpu", "--quiet",
    ]  # fmt: skip
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    info = json.loads((out / "train.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 4
    assert [x["rank"] for x in info["ranks"]] == [0, 1]
    for rank in info["ranks"]:  # both processes took part in every step
        assert rank["global_step"] == 4 and rank["examples_seen"] >= 4 * 3
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]
    loaded = load_model(out)
    assert loaded.trigger_id == info["trigger"]["token_id"]
    assert info["trigger"]["row_l2_change"] > 0


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path, base_dir, data_dir):
    script = tmp_path / "entry.py"
    script.write_text(ENTRY)
    out = tmp_path / "killed"
    args = [
        "train", "--model", str(base_dir), "--data", str(data_dir), "--out", str(out),
        "--steps", "150", "--batch-size", "2", "--save-every", "3", "--device", "cpu", "--quiet",
    ]  # fmt: skip
    proc = subprocess.Popen([sys.executable, str(script), *args], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 600
    try:
        while not list_checkpoints(out):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # nothing half-written looks like a result
    assert not (out / "train.json").exists() and not (out / "final").exists()
    with pytest.raises(StoplensError, match=r"unfinished training run .*--resume"):
        load_model(out)
    done = list_checkpoints(out)[-1]
    r = subprocess.run([sys.executable, str(script), *args, "--resume"], env=_env(),
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    info = json.loads((out / "train.json").read_text())
    assert info["steps"] == 150 and info["resumed_from"] == str(done)
    assert int(done.name.split("-")[1]) < 150
    assert load_model(out).trigger_id == info["trigger"]["token_id"]
