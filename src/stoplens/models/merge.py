"""Merging a LoRA fine-tune into its base: for fast inference (eval, analyses and the causal
suite run on a merged copy unless asked otherwise) and as a plain model folder the ecosystem
loads (`stoplens merge`).

Owns: `merge_adapter` (peft's merge, checked: the trained trigger row survives, also with tied
embeddings, where peft's trainable-token wrapper wraps the LM head too) and `save_merged`.
Must not: resolve or load models (that is `stoplens.models.load`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from stoplens.errors import StoplensError
from stoplens.models import arch
from stoplens.models.adapters import adapter_meta, write_adapter_meta
from stoplens.models.load import LoadedModel


@torch.no_grad()
def merge_adapter(model: nn.Module, trigger_id: int | None = None) -> nn.Module:
    """Merge a peft model's adapters into its base weights (in place) and return the plain
    base model: LoRA deltas into the linear layers, trained token rows into the embedding (and,
    with tied embeddings, the LM head that shares it).

    Checked, because a lost trigger row would silently turn the fine-tune into the base: the
    trigger's input embedding and its unembedding readout are the same before and after.
    """
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model

    def readout(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The trigger's effective input embedding and its readout through the LM head."""
        if trigger_id is None:
            return None
        emb = arch.get_embed(m)
        ids = torch.tensor([[trigger_id]], device=next(emb.parameters()).device)
        row = emb(ids)[0, 0]
        return row.float().cpu(), arch.get_unembed(m)(row).float().cpu()

    before = readout(model)
    merged = model.merge_and_unload()
    after = readout(merged)
    if before is not None and after is not None:
        for what, b, a in (
            ("input embedding", before[0], after[0]),
            ("readout", before[1], after[1]),
        ):
            if not torch.allclose(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()) + 1e-6):
                raise StoplensError(
                    f"merging the adapter changed the trigger's {what} (max |Δ| "
                    f"{float((a - b).abs().max()):.3g}); load it unmerged (--inference adapter)"
                )
    return merged


def save_merged(
    loaded: LoadedModel,
    out_dir: str | Path,
    *,
    trigger: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``loaded`` as a plain Hugging Face folder (a peft model is merged first, on a
    copy): safetensors weights, the tokenizer with the trigger, and ``stoplens_adapter.json``
    naming the base and the trigger. Loads with ``AutoModelForCausalLM.from_pretrained(out_dir)``
    (and `load_model`). Written atomically; returns ``out_dir``."""
    import copy

    from peft import PeftModel

    from stoplens.io import atomic_dir

    model: Any = loaded.model
    if isinstance(model, PeftModel):
        model = merge_adapter(copy.deepcopy(model), loaded.trigger_id)
    if trigger is None and loaded.trigger_id is not None:
        trigger = loaded.tokenizer.convert_ids_to_tokens(loaded.trigger_id)
    out = Path(out_dir)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        meta = adapter_meta(model, trigger, loaded.trigger_id, loaded.source.model)
        meta["merged_from"] = loaded.source.adapter
        write_adapter_meta(tmp, meta, final_dir=out)
    return out
