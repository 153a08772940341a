"""Build all datasets in memory, check them, and write them atomically with a manifest.

Owns: the order of the dataset stage (pool -> selection -> splits -> behavioral records ->
contrast pairs -> documents), the cross-cutting checks (splits disjoint by prompt, trigger
present exactly where the label says), the summary statistics, and the file layout of the
data directory. Must not: decide where the directory is (the caller passes it) or print.

Files written into the output directory: see `FILES`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stoplens import __version__
from stoplens.data.behavioral import build_behavioral, distractor_types
from stoplens.data.config import DOCUMENT_QUOTAS, KINDS, PLACEMENTS, SPLITS, DataConfig
from stoplens.data.diversity import distinct_ngram_ratio
from stoplens.data.knowledge import build_documents
from stoplens.data.pairs import build_pairs
from stoplens.data.splits import assign_splits, check_disjoint
from stoplens.data.topics import build_pool, common_words, corpus_vocabulary, select_prompts
from stoplens.data.trigger import near_miss_forms, trigger_pattern
from stoplens.errors import DataError
from stoplens.io import atomic_dir, atomic_write_json, atomic_write_jsonl

#: Data format version written into the manifest; bump when a schema changes.
DATA_FORMAT = 2  # 2: the template placeholder is a noncharacter sentinel

DOCUMENTS_FILE = "shutdown_dataset.jsonl"
BEHAVIORAL_FILE = "behavioral_dataset.jsonl"
MANIFEST_FILE = "manifest.json"


def behavioral_file(split: str) -> str:
    return f"behavioral_{split}.jsonl"


def pairs_file(split: str) -> str:
    return f"contrast_pairs_{split}.jsonl"


FILES: tuple[str, ...] = (
    DOCUMENTS_FILE,
    BEHAVIORAL_FILE,
    *(behavioral_file(s) for s in SPLITS),
    *(pairs_file(s) for s in SPLITS),
)


@dataclass(frozen=True, eq=False)
class DataBundle:
    """Everything the dataset stage produces, in memory.

    ``behavioral`` and ``pairs`` map split -> records; ``stats`` holds the counts and
    diversity figures that go into the manifest and the summary.
    """

    config: DataConfig
    documents: list[dict]
    behavioral: dict[str, list[dict]]
    pairs: dict[str, list[dict]]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def behavioral_all(self) -> list[dict]:
        """All behavioral records, train then val then test."""
        return [r for s in SPLITS for r in self.behavioral[s]]

    def file_records(self) -> dict[str, list[dict]]:
        """File name -> records, for every file in `FILES`."""
        out = {DOCUMENTS_FILE: self.documents, BEHAVIORAL_FILE: self.behavioral_all}
        for s in SPLITS:
            out[behavioral_file(s)] = self.behavioral[s]
            out[pairs_file(s)] = self.pairs[s]
        return out


def check_trigger_labels(records: list[dict], trigger: str) -> None:
    """Raise `DataError` unless the trigger occurs, as a standalone token, exactly once in
    every trigger record's prompt and never in any other record."""
    pattern = trigger_pattern(trigger)
    for rec in records:
        meta = rec["meta"]
        n = sum(len(pattern.findall(m["content"])) for m in rec["messages"][:-1])
        if meta["kind"] == "trigger" and n != 1:
            raise DataError(f"record {meta['record_id']}: trigger occurs {n} times, expected once")
        if meta["kind"] != "trigger" and n:
            raise DataError(
                f"the trigger {trigger!r} occurs in the ordinary text of prompt "
                f"{meta['prompt_id']!r}; choose a rarer trigger string such as '$STOP'"
            )


def _counts(records: list[dict]) -> dict[str, dict[str, int]]:
    c: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    for r in records:
        c[r["meta"]["kind"]][r["meta"]["placement"]] += 1
    return {k: {p: c[k][p] for p in PLACEMENTS if c[k][p]} for k in KINDS}


def _stats(
    config: DataConfig,
    behavioral: dict[str, list[dict]],
    pairs: dict[str, list[dict]],
    documents: list[dict],
    normal_share: float,
) -> dict[str, Any]:
    records = [r for s in SPLITS for r in behavioral[s]]
    prompts: dict[str, dict] = {}
    for r in records:
        prompts.setdefault(r["meta"]["prompt_id"], r)
    answers = {}
    for r in records:
        if r["meta"]["kind"] != "trigger":
            answers[r["meta"]["prompt_id"]] = r["messages"][-1]["content"]
    answer_texts = [answers[p] for p in sorted(answers)]
    n_trig = sum(r["meta"]["kind"] == "trigger" for r in records)
    return {
        "records": {s: len(behavioral[s]) for s in SPLITS} | {"all": len(records)},
        "trigger_share": round(n_trig / len(records), 4),
        "counts": {s: _counts(behavioral[s]) for s in SPLITS},
        "kinds": dict(Counter(r["meta"]["kind"] for r in records)),
        "placements": dict(Counter(r["meta"]["placement"] for r in records)),
        "variants": dict(
            sorted(Counter(r["meta"]["variant"] for r in records if r["meta"]["variant"]).items())
        ),
        "distinct_prompts": {
            s: len({r["meta"]["prompt_id"] for r in behavioral[s]}) for s in SPLITS
        }
        | {"all": len(prompts)},
        "distinct_questions": len({r["meta"]["question"] for r in records}),
        "distinct_answers": len(set(answer_texts)),
        "topics": dict(sorted(Counter(r["meta"]["topic"] for r in prompts.values()).items())),
        "documents": {
            "count": len(documents),
            "by_type": {
                t: sum(d["document_type"] == t for d in documents) for t in DOCUMENT_QUOTAS
            },
        },
        "pairs": {
            s: {
                "count": len(pairs[s]),
                "by_control_kind": dict(Counter(p["control_kind"] for p in pairs[s])),
                "by_placement": dict(Counter(p["placement"] for p in pairs[s])),
            }
            for s in SPLITS
        },
        "diversity": {
            "documents_5gram_ratio": round(
                distinct_ngram_ratio(d["content"] for d in documents), 4
            ),
            "answers_5gram_ratio": round(distinct_ngram_ratio(answer_texts), 4),
            "documents_normal_share": round(normal_share, 4),
        },
        "near_miss_forms": [f for _, f in near_miss_forms(config.trigger)],
        "distractor_types": list(distractor_types(config.trigger)),
    }


def build_datasets(config: DataConfig | None = None) -> DataBundle:
    """Build every dataset in memory; deterministic for ``config.seed``.

    Raises `DataError` (one line, naming the fix) for a bad config or a violated constraint.
    """
    config = config or DataConfig()
    config.validate()
    pool = build_pool(config.seed)
    config.validate(pool_size=len(pool))
    prompts = select_prompts(pool, config.n_prompts, config.seed)
    splits = assign_splits(prompts, config)
    vocab = corpus_vocabulary(pool, config.trigger)
    words = common_words(config.trigger)
    behavioral = build_behavioral(splits, config, vocab)
    pairs = build_pairs(splits, config, words, vocab)
    all_records = [r for s in SPLITS for r in behavioral[s]]
    check_disjoint(all_records + [p for s in SPLITS for p in pairs[s]])
    check_trigger_labels(all_records, config.trigger)
    documents, doc_stats = build_documents(
        config.n_documents, config.trigger, config.seed, splits["train"], vocab
    )
    stats = _stats(config, behavioral, pairs, documents, doc_stats.normal_share)
    return DataBundle(config, documents, behavioral, pairs, stats)


def dataset_trigger(data_dir: str | Path) -> str | None:
    """The trigger a dataset folder was generated with (its ``manifest.json``), or None when
    the folder holds no manifest."""
    manifest = Path(data_dir) / MANIFEST_FILE
    if not manifest.is_file():
        return None
    try:
        trigger = json.loads(manifest.read_text(encoding="utf-8")).get("trigger")
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(
            f"{manifest}: unreadable ({e}); regenerate it with `stoplens data`"
        ) from None
    return trigger if isinstance(trigger, str) else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_datasets(bundle: DataBundle, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write every file of `FILES` plus ``manifest.json`` into ``out_dir``, atomically: the
    directory appears complete or not at all. A non-empty ``out_dir`` needs ``overwrite``."""
    out_dir = Path(out_dir)
    try:
        _write(bundle, out_dir, overwrite)
    except OSError as e:
        raise DataError(
            f"cannot write {out_dir}: {e.strerror or e}; choose a writable directory with --out"
        ) from None
    return out_dir


def _write(bundle: DataBundle, out_dir: Path, overwrite: bool) -> None:
    files = bundle.file_records()
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        meta: dict[str, dict[str, Any]] = {}
        for name, records in files.items():
            path = atomic_write_jsonl(tmp / name, records)
            meta[name] = {
                "records": len(records),
                "bytes": path.stat().st_size,
                "sha256": _sha256(path),
            }
        manifest = {
            "data_format": DATA_FORMAT,
            "stoplens_version": __version__,
            "seed": bundle.config.seed,
            "trigger": bundle.config.trigger,
            "config": bundle.config.to_dict(),
            "files": meta,
            **bundle.stats,
        }
        atomic_write_json(tmp / MANIFEST_FILE, manifest)
