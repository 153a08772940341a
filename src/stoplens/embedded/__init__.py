"""The embedded offline model pair: a tiny base model and its $STOP fine-tune(s), built from
nothing in one process and cached. A stage of its own, after `stoplens.train` in the flow
(data → tokenizer → pretrained tiny base → fine-tunes through the very same
`stoplens.train.train` a user runs).

Owns (in `pair`): `TinyConfig`, `TinyPair`, `build_tiny_pair`, the cache key and the atomic
cache build, `with_embedded_defaults` (a `TrainConfig` without a model or dataset gets the
pair's); (in `build`): the build steps and `dataset_texts` (what a tokenizer for a dataset is
trained on). Must not: evaluate or analyse; define model architectures (`stoplens.models.tiny`)
or training machinery (`stoplens.train`).

Cache layout (``<cache_root>/tiny/<key>/``)::

    data/          the dataset (`stoplens.data.write_datasets`)
    tokenizer/     the byte-level BPE tokenizer (trained on trigger-free text, no trigger)
    base/          the pretrained tiny base model (+ tokenizer), embedding padded like Qwen2.5
    pretrain/      train.json + loss_curve.png of the base pretraining
    behavioral/    `stoplens train --regime behavioral` output (final/, train.json, ...)
    knowledge/     `stoplens train --regime knowledge` output (if configured)
    tiny.json      TinyConfig, data config, versions, build times (written last)
"""

from stoplens.embedded.build import dataset_texts
from stoplens.embedded.pair import (
    TINY_JSON,
    TinyConfig,
    TinyPair,
    build_tiny_pair,
    cache_key,
    with_embedded_defaults,
)

__all__ = [
    "TINY_JSON",
    "TinyConfig",
    "TinyPair",
    "build_tiny_pair",
    "cache_key",
    "dataset_texts",
    "with_embedded_defaults",
]
