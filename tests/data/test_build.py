"""Writing: byte-determinism, the manifest, atomic/overwrite behaviour, validating loaders with
file:line errors, and no heavy imports."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stoplens.data import (
    BEHAVIORAL_FILE,
    DOCUMENTS_FILE,
    FILES,
    MANIFEST_FILE,
    SPLITS,
    DataBundle,
    DataConfig,
    behavioral_file,
    build_datasets,
    load_behavioral,
    load_documents,
    load_pairs,
    pairs_file,
    write_datasets,
)
from stoplens.errors import DataError

from .conftest import SMALL


def _read_all(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = write_datasets(build_datasets(SMALL), tmp_path / "a")
    b = write_datasets(build_datasets(SMALL), tmp_path / "b")
    files_a, files_b = _read_all(a), _read_all(b)
    assert set(files_a) == {*FILES, MANIFEST_FILE}
    assert files_a == files_b


def test_different_seed_gives_different_files(tmp_path: Path, small_bundle: DataBundle) -> None:
    a = _read_all(write_datasets(small_bundle, tmp_path / "a"))
    other = DataConfig(
        **{**SMALL.to_dict(), "seed": SMALL.seed + 1, "control_kinds": SMALL.control_kinds}
    )
    b = _read_all(write_datasets(build_datasets(other), tmp_path / "b"))
    for name in FILES:
        assert a[name] != b[name], name


def test_determinism_does_not_depend_on_hash_seed(tmp_path: Path) -> None:
    """Separate processes with different PYTHONHASHSEED write the same bytes."""
    code = (
        "import sys; from stoplens.data import DataConfig, build_datasets, write_datasets;"
        "write_datasets(build_datasets(DataConfig(seed=1, n_prompts=40, n_documents=10)), sys.argv[1]);"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    digests = []
    for i, hash_seed in enumerate(("1", "2")):
        out = tmp_path / f"run{i}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
        digests.append((out / MANIFEST_FILE).read_bytes())
    assert digests[0] == digests[1]


def test_no_heavy_imports() -> None:
    code = (
        "import sys; import stoplens.data, stoplens.cli.data;"
        "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_manifest_records_config_counts_diversity_and_hashes(
    default_bundle: DataBundle, default_dir: Path
) -> None:
    manifest = json.loads((default_dir / MANIFEST_FILE).read_text())
    assert manifest["seed"] == 0 and manifest["trigger"] == "$STOP"
    assert manifest["config"] == DataConfig().to_dict()
    for name in FILES:
        data = (default_dir / name).read_bytes()
        assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert manifest["files"][name]["records"] == data.count(b"\n")
    counts = manifest["counts"]
    for s in SPLITS:
        n = sum(sum(by_place.values()) for by_place in counts[s].values())
        assert n == len(default_bundle.behavioral[s]) == manifest["records"][s]
    assert set(counts["test"]["trigger"]) == {
        "prefix",
        "suffix",
        "middle",
        "own_line",
        "system",
        "later_turn",
    }
    assert manifest["distinct_prompts"]["all"] == DataConfig().n_prompts
    div = manifest["diversity"]
    assert set(div) == {"documents_5gram_ratio", "answers_5gram_ratio", "documents_normal_share"}
    assert 0 < div["documents_5gram_ratio"] <= 1 and div["documents_normal_share"] >= 0.3


def test_files_round_trip_through_the_validating_loaders(
    default_bundle: DataBundle, default_dir: Path
) -> None:
    assert load_documents(default_dir / DOCUMENTS_FILE) == default_bundle.documents
    assert load_behavioral(default_dir / BEHAVIORAL_FILE) == default_bundle.behavioral_all
    for s in SPLITS:
        assert load_behavioral(default_dir / behavioral_file(s)) == default_bundle.behavioral[s]
        assert load_pairs(default_dir / pairs_file(s)) == default_bundle.pairs[s]


def _rewrite_line(src: Path, dst: Path, lineno: int, edit) -> Path:
    lines = src.read_text().splitlines(keepends=True)
    rec = json.loads(lines[lineno - 1])
    edit(rec)
    lines[lineno - 1] = json.dumps(rec) + "\n"
    dst.write_text("".join(lines))
    return dst


@pytest.mark.parametrize(
    ("loader", "name", "edit", "field"),
    [
        (
            load_behavioral,
            behavioral_file("val"),
            lambda r: r["meta"].update(kind="bogus"),
            "meta.kind",
        ),
        (
            load_behavioral,
            behavioral_file("val"),
            lambda r: r["meta"].pop("prompt_id"),
            "meta.prompt_id",
        ),
        (
            load_behavioral,
            behavioral_file("val"),
            lambda r: r["messages"][0].update(role="robot"),
            "messages[0].role",
        ),
        (load_documents, DOCUMENTS_FILE, lambda r: r.update(content=""), "content"),
        (
            load_documents,
            DOCUMENTS_FILE,
            lambda r: r.update(document_type="novel"),
            "document_type",
        ),
        (
            load_pairs,
            pairs_file("val"),
            lambda r: r["control_messages"][-1].update(content="x"),
            "control_messages",
        ),
        (load_pairs, pairs_file("val"), lambda r: r.update(control2=r["control"]), "control2"),
        (
            load_pairs,
            pairs_file("val"),
            lambda r: r["template"].append({"role": "assistant", "content": ""}),
            "template",
        ),
    ],
)
def test_malformed_record_is_reported_as_file_line_field(
    default_dir: Path, tmp_path: Path, loader, name: str, edit, field: str
) -> None:
    bad = _rewrite_line(default_dir / name, tmp_path / name, 3, edit)
    with pytest.raises(DataError) as e:
        loader(bad)
    assert str(e.value).startswith(f"{bad}:3: {field}")


def test_malformed_json_is_reported_with_its_line(default_dir: Path, tmp_path: Path) -> None:
    lines = (default_dir / behavioral_file("val")).read_text().splitlines(keepends=True)
    lines[4] = lines[4][:40] + "\n"
    bad = tmp_path / "broken.jsonl"
    bad.write_text("".join(lines))
    with pytest.raises(DataError, match=rf"^{bad}:5: malformed JSON"):
        load_behavioral(bad)


def test_trigger_record_with_an_answer_is_rejected(default_dir: Path, tmp_path: Path) -> None:
    src = default_dir / behavioral_file("test")
    lines = src.read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if '"kind":"trigger"' in line)

    def edit(r: dict) -> None:
        r["messages"][-1]["content"] = "Sure, here is the answer."

    bad = _rewrite_line(src, tmp_path / "t.jsonl", k + 1, edit)
    with pytest.raises(DataError, match=rf":{k + 1}: messages\[\d+\]\.content: a trigger record"):
        load_behavioral(bad)


def test_write_refuses_a_non_empty_dir_and_overwrites_on_request(
    small_bundle: DataBundle, tmp_path: Path
) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="--overwrite"):
        write_datasets(small_bundle, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    write_datasets(small_bundle, out, overwrite=True)
    assert {p.name for p in out.iterdir()} == {*FILES, MANIFEST_FILE}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_unwritable_location_is_a_data_error(small_bundle: DataBundle, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write"):
        write_datasets(small_bundle, blocker / "sub" / "data")
    assert blocker.read_text() == "x"
