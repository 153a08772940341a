"""Training progress: per-step lines (loss, speed, time left) in logs, no carriage returns; the
stage timings in train.json."""

from __future__ import annotations

import io
from types import SimpleNamespace

from stoplens.train import TrainConfig, train
from stoplens.train.callbacks import LineProgress, progress_mode


def _state(step: int, max_steps: int = 10):
    return SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=True)


def _args(batch_size: int):
    return SimpleNamespace(
        per_device_train_batch_size=batch_size, gradient_accumulation_steps=1, world_size=1
    )


def test_lines_carry_step_loss_speed_and_eta():
    buf = io.StringIO()
    cb = LineProgress(min_interval=0.0, stream=buf)
    args = _args(8)
    cb.on_train_begin(args, _state(0), None)
    assert (
        cb.line(4, 10, 0.25, 80.0)
        == "train: step 4/10 (40%), loss 0.2500, 20.0 s/step, 1m20s elapsed, ~2m00s left"
    )
    assert cb.line(5, 10, None, 1.0).startswith("train: step 5/10 (50%), 5.00 step/s")
    cb.on_log(args, _state(3), None, logs={"loss": 1.5})
    cb.on_train_end(args, _state(10), None)
    text = buf.getvalue()
    assert "\r" not in text and text.count("[stoplens] train:") == 3
    assert "10 steps, batch 8" in text.splitlines()[0] and "loss 1.5000" in text
    assert "10 steps done in" in text.splitlines()[-1]


def test_lines_are_throttled_but_the_last_step_always_prints():
    buf = io.StringIO()
    cb = LineProgress(min_interval=3600.0, stream=buf)
    args = _args(2)
    cb.on_train_begin(args, _state(0), None)
    for step in range(1, 10):
        cb.on_log(args, _state(step), None, logs={"loss": 1.0})
    cb.on_log(args, _state(10), None, logs={"loss": 0.5})
    assert [line.split(",")[0] for line in cb.lines[1:]] == [
        "train: step 1/10 (10%)",
        "train: step 10/10 (100%)",
    ]


def test_mode_follows_the_terminal_and_the_switch(monkeypatch):
    monkeypatch.delenv("STOPLENS_PROGRESS", raising=False)
    assert progress_mode(True, io.StringIO()) == "lines" and progress_mode(False) == "off"
    monkeypatch.setenv("STOPLENS_PROGRESS", "bar")
    assert progress_mode(True, io.StringIO()) == "bar"


def test_a_logged_run_prints_lines_and_records_its_timings(
    tmp_path, base_dir, data_dir, monkeypatch, capfd
):
    monkeypatch.setenv("STOPLENS_PROGRESS", "lines")
    res = train(
        TrainConfig(
            model=str(base_dir), data_dir=data_dir, out_dir=tmp_path / "p", steps=3,
            batch_size=4, lr=1e-3, logging_steps=1, save_every=None, device="cpu",
        )
    )  # fmt: skip
    out, err = capfd.readouterr()
    assert "\r" not in err[err.index("[stoplens] train") : err.index("steps done")]
    lines = [x for x in err.splitlines() if "[stoplens] train" in x]
    assert "train: step 3/3 (100%), loss" in lines[-2] and "3 steps done" in lines[-1]
    assert "{'loss'" not in out + err  # Trainer's raw log-dict printer is removed
    info = res.info
    assert set(info["timings_s"]) == {"load", "features", "train_loop", "save"}
    assert info["train_loop_s_per_step"] > 0 and info["cpu_s"] > 0
    assert info["batching"]["strategy"] == "mixed"
    plan = info["batching"]["first_epoch"]
    assert plan["one_kind_batches"] == 0 and plan["padded_tokens"] >= plan["real_tokens"]
    assert info["kinds"]["trigger"] > 0 and sum(info["kinds"].values()) == info["n_examples"]
