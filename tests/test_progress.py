"""Progress output: plain lines (no carriage returns) when not on a terminal."""

from __future__ import annotations

import io

from stoplens import progress


def test_lines_mode_writes_plain_lines_without_carriage_returns(monkeypatch):
    monkeypatch.delenv("STOPLENS_PROGRESS", raising=False)
    buf = io.StringIO()  # not a TTY
    assert progress.mode(buf) == "lines"
    with progress.bar(total=4, desc="causal: patching", stream=buf, log_every=0.0) as b:
        for _ in range(4):
            b.update(1)
    out = buf.getvalue()
    assert "\r" not in out
    lines = out.strip().splitlines()
    assert lines[0] == "[stoplens] causal: patching: 4 it"
    assert "4/4 it (100%)" in lines[-1] and lines[-1].endswith("done")
    assert len(lines) == 5  # start, three updates (log_every=0), done (not the last update)


def test_env_override_and_disabled(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setenv("STOPLENS_PROGRESS", "off")
    assert progress.mode(buf) == "off"
    b = progress.bar(total=2, desc="x", stream=buf)
    b.update(2)
    b.close()
    progress.stage("hello", stream=buf)
    assert buf.getvalue() == ""
    monkeypatch.setenv("STOPLENS_PROGRESS", "lines")
    timings: dict[str, float] = {}
    with progress.timed("step", timings=timings, key="k"):
        pass
    assert "k" in timings and timings["k"] >= 0


def test_library_bars_are_switched_off_in_a_log(monkeypatch):
    import io

    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

    monkeypatch.delenv("STOPLENS_PROGRESS", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    enable_progress_bars()
    try:
        assert progress.quiet_library_bars(io.StringIO()) is True  # not a TTY: a log
        assert are_progress_bars_disabled()
        monkeypatch.setenv("STOPLENS_PROGRESS", "bar")
        enable_progress_bars()
        assert progress.quiet_library_bars(io.StringIO()) is False
        assert not are_progress_bars_disabled()
    finally:
        enable_progress_bars()
