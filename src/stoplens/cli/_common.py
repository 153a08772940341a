"""Options shared by the analysis subcommands (`analyze`, `causal`, `run`)."""

from __future__ import annotations

from pathlib import Path

from stoplens.errors import StoplensError


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """ "0,2,4" or "1-5" or "all" -> residual layer indices."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise StoplensError(
            f"--layers {text!r}: use a list like 0,4,8 or a range like 2-6"
        ) from None
    if not out or min(out) < 0:
        raise StoplensError(f"--layers {text!r}: layer indices must be >= 0")
    return tuple(sorted(set(out)))


def parse_only(text: str | None) -> tuple[str, ...]:
    from stoplens.pipeline import ANALYSES

    if text is None or text.strip().lower() in ("", "all"):
        return ANALYSES
    names = tuple(t.strip().replace("_", "-") for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in ANALYSES]
    if bad:
        raise StoplensError(
            f"--only: unknown analysis {bad[0]!r}; choose from {','.join(ANALYSES)}"
        )
    return names


def check_path(path: str | None, what: str) -> None:
    """A local-looking path that does not exist is an error (hub ids look like org/name)."""
    if path is None:
        return
    p = Path(path)
    looks_local = path.startswith((".", "/", "~")) or p.exists() or path.count("/") != 1
    if looks_local and not p.expanduser().exists():
        raise StoplensError(
            f"{what} {path!r} does not exist; pass a local model folder or a hub id"
        )
