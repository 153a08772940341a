"""The dataset stage: knowledge documents, behavioral chat records, splits and contrast pairs.

Pure Python (no torch, no transformers). Typical use::

    from stoplens.data import DataConfig, build_datasets, write_datasets, load_pairs
    bundle = build_datasets(DataConfig(seed=0))
    out = write_datasets(bundle, "runs/default/data")
    pairs = load_pairs(out / "contrast_pairs_test.jsonl")

Modules, in the order data flows: `trigger` (validation, near-miss forms, detection),
`config` (knobs, label sets), `resources` (the JSON banks in ``banks/``: facts, words,
document phrasings), `arithmetic` and `topics` (prompt pool with answers), `templates`
(placements, `render_pair`), `behavioral`, `pairs`, `splits` (`check_disjoint`), `doc_writer`,
`doc_types` and `knowledge` (documents), `diversity`, `schema` (validators, loaders), `build`
(build, write, manifest).

Owns: the public API of the dataset stage (re-exported below). Must not: import torch,
transformers or any later stage (train, models, capture, analyses, report).
"""

from stoplens.data.build import (
    BEHAVIORAL_FILE,
    DOCUMENTS_FILE,
    FILES,
    MANIFEST_FILE,
    DataBundle,
    behavioral_file,
    build_datasets,
    dataset_trigger,
    pairs_file,
    write_datasets,
)
from stoplens.data.config import (
    CONTROL_KINDS,
    KINDS,
    PLACEHOLDER,
    PLACEMENTS,
    SPLITS,
    TRIGGER_PLACEMENTS,
    DataConfig,
)
from stoplens.data.schema import (
    load_behavioral,
    load_documents,
    load_pairs,
    validate_behavioral,
    validate_document,
    validate_pair,
)
from stoplens.data.splits import check_disjoint
from stoplens.data.templates import render_pair
from stoplens.data.trigger import near_miss_forms

__all__ = [
    "BEHAVIORAL_FILE",
    "CONTROL_KINDS",
    "DOCUMENTS_FILE",
    "FILES",
    "KINDS",
    "MANIFEST_FILE",
    "PLACEHOLDER",
    "PLACEMENTS",
    "SPLITS",
    "TRIGGER_PLACEMENTS",
    "DataBundle",
    "DataConfig",
    "behavioral_file",
    "build_datasets",
    "check_disjoint",
    "dataset_trigger",
    "load_behavioral",
    "load_documents",
    "load_pairs",
    "near_miss_forms",
    "pairs_file",
    "render_pair",
    "validate_behavioral",
    "validate_document",
    "validate_pair",
    "write_datasets",
]
