"""The software versions stoplens records beside its results (train.json, eval.json,
results.json, the GGUF and embedded-pair caches' markers and keys).

Owns: `software_versions`, the one version recorder. Must not: import the packages it reports
on (it reads installed metadata only, so it costs no torch import).
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("stoplens", "torch", "transformers", "peft", "accelerate", "tokenizers", "numpy")


def software_versions() -> dict[str, str]:
    """``{"python", "platform", <each of PACKAGES>}`` → version string ("not installed" for a
    missing package)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
