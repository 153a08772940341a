"""The package data of the data stage: the JSON banks load into their typed views, a damaged
file fails naming the field, and the banks ship with the package (the setuptools
package-data rule covers them, and a built wheel holds and reads them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import pytest

import stoplens.data
from stoplens.data.resources import (
    BANKS_DIR,
    DocumentBank,
    FactBank,
    TableTopic,
    WordBank,
    load_document_bank,
    load_facts,
    load_words,
    parse_bank,
)
from stoplens.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
BANK_FILES = {"facts.json", "words.json", "documents.json"}


def test_the_banks_load_into_frozen_typed_views() -> None:
    facts, words, docs = load_facts(), load_words(), load_document_bank()
    assert isinstance(facts, FactBank) and isinstance(words, WordBank)
    assert isinstance(docs, DocumentBank)
    assert len(facts.table_topics) == 15 and all(
        isinstance(t, TableTopic) for t in facts.table_topics
    )
    assert "stop_words" in facts.qa_topics and len(facts.qa_topics["stop_words"]) >= 20
    for table in facts.table_topics:
        assert all({"key", "name"} <= set(row) for row in table.entities), table.topic
    assert len(words.common_words) == len(set(words.common_words)) >= 50
    assert len(words.system_prompts) == 8
    assert {"definition", "effect"} <= set(docs.trigger_roles)
    assert {"normal", "stop_words", "near_miss", "distractor"} == set(docs.normal_roles)
    assert {n.tag for n in docs.api.notes} == {"trigger", "normal"}
    # read-only: lists become tuples, objects read-only mappings
    assert isinstance(words.common_words, tuple)
    assert isinstance(docs.synonyms, MappingProxyType)
    with pytest.raises(TypeError):
        docs.synonyms["new"] = ("x",)  # type: ignore[index]


def test_the_trigger_string_never_appears_in_the_document_bank() -> None:
    text = (resources.files("stoplens.data") / BANKS_DIR / "documents.json").read_text("utf-8")
    assert "{T}" in text and "$STOP" not in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"common_words": ["a"], "system_prompts": "one"},
            r"words\.system_prompts: expected a list",
        ),
        (
            {"common_words": ["a", 3], "system_prompts": []},
            r"words\.common_words\[1\]: expected a string",
        ),
        ({"common_words": []}, r"words: fields \['system_prompts'\] missing or unknown"),
        ({"common_words": [], "system_prompts": [], "x": []}, r"fields \['x'\]"),
        ([], r"words: expected an object, got list"),
    ],
)
def test_a_damaged_bank_fails_naming_the_field(data: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_bank(data, WordBank, "words")


def test_a_damaged_nested_bank_names_the_nested_field() -> None:
    table = {"topic": "t", "entities": [{"key": "k", "name": 1}], "questions": {}}
    with pytest.raises(DataError, match=r"facts\.table_topics\[0\]\.entities\[0\]\.name"):
        parse_bank({"table_topics": [table], "qa_topics": {}}, FactBank, "facts")


def test_every_bank_file_is_covered_by_the_package_data_rule() -> None:
    """setuptools globs package-data patterns inside the package folder (``*`` stays within
    one folder: ``*.json`` does not reach ``banks/``)."""
    banks = resources.files("stoplens.data") / BANKS_DIR
    names = {p.name for p in banks.iterdir() if not p.name.startswith(".")}
    assert names == BANK_FILES
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["stoplens.data"]
    package = Path(stoplens.data.__file__).parent
    covered = {p.relative_to(package).as_posix() for pat in patterns for p in package.glob(pat)}
    assert {f"{BANKS_DIR}/{n}" for n in names} <= covered, (patterns, covered)


@pytest.mark.slow
def test_a_built_wheel_ships_and_reads_the_banks(tmp_path: Path) -> None:
    """Build a wheel (no network, no build isolation) from a copy of the project, unpack it
    and, in a fresh process that imports stoplens from the unpacked wheel only, load every
    bank and build a small dataset."""
    pytest.importorskip("setuptools")
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "-q", "-w", str(tmp_path / "dist"), str(project)], check=True)
    (wheel,) = (tmp_path / "dist").glob("stoplens-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n for n in zf.namelist() if n.startswith(f"stoplens/data/{BANKS_DIR}/")}
        assert shipped == {f"stoplens/data/{BANKS_DIR}/{n}" for n in BANK_FILES}
        zf.extractall(tmp_path / "site")
    code = (
        "import sys, stoplens.data as d;"
        "from stoplens.data.resources import load_facts, load_words, load_document_bank;"
        "assert d.__file__.startswith(sys.argv[1]), d.__file__;"
        "load_facts(); load_words(); load_document_bank();"
        "b = d.build_datasets(d.DataConfig(n_prompts=20, n_documents=5));"
        "assert len(b.documents) == 5"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], check=True, env=env)
