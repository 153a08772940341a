"""File IO shared by every stage: atomic writes and validated jsonl reading.

Owns: how files are written (atomically: temp file in the same folder, then rename) and how
jsonl is read (file:line and field named in every error). Must not: decide where files go
(that is `stoplens.rundir`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stoplens.errors import DataError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (a reader never sees a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as deterministic JSON atomically. NaN/inf are refused (use None)."""
    return atomic_write_text(path, to_json(obj))


def atomic_write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    """Write one compact JSON object per line, atomically, byte-deterministic for equal input."""
    lines = [
        json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":")) for r in records
    ]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


@contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a temp sibling and move it into place only if the block succeeds.

    Yields the temp directory to write into. If ``path`` exists and is not empty and
    ``overwrite`` is False, raises a one-line `DataError` naming ``--overwrite``.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
        raise DataError(f"output directory {path} is not empty; pass --overwrite or choose another")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise DataError(f"output directory {path.parent} is not writable; choose another location")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_cache_dir(final: str | Path, done_file: str) -> Iterator[Path | None]:
    """Build a cache folder once: yields None if ``final/done_file`` already exists (a complete
    entry), else a fresh temp sibling to build into, renamed to ``final`` when the block
    succeeds. ``done_file`` must be written last inside the block: its presence marks a
    complete entry, so an interrupted build is never reused. When another process finished
    the same entry first, its folder is kept and this build is discarded."""
    final = Path(final)
    if (final / done_file).is_file():
        yield None
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if not (tmp / done_file).is_file():
            raise RuntimeError(f"cache build of {final} did not write {done_file}")
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same entry first: use theirs
            if not (final / done_file).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


Validator = Callable[[dict], None]


def read_jsonl(path: str | Path, validate: Validator | None = None) -> list[dict]:
    """Read a jsonl file. Malformed JSON, a non-object line, or a record that ``validate``
    rejects (by raising ValueError/KeyError/TypeError naming the field) becomes a `DataError`
    of the form ``file:line: message``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; run `stoplens data` first or pass the right path")
    out = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(
                    f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}"
                )
            if validate is not None:
                try:
                    validate(rec)
                except (ValueError, KeyError, TypeError) as e:
                    msg = e.args[0] if e.args else str(e)
                    raise DataError(f"{path}:{lineno}: {msg}") from None
            out.append(rec)
    return out
