"""Analysis 4: base vs fine-tuned.

* Difference-in-differences per layer, at the decision positions:
  D = [ft(trig) − ft(ctrl)] − [base(trig) − base(ctrl)]; ‖mean D‖, mean ‖D‖ and mean ‖D‖ /
  mean ‖h_ft‖ with bootstrap CIs; the same on the control-vs-control null; each model's own
  trigger Δ profile; and the cosine between the fine-tuned and base mean Δ (with CI).
  What fine-tuning added is D; a large Δ in the base too means "any token swap does this".
* The same DiD for the fixed-token null (one fixed ordinary token in the trigger's place):
  fine-tuning (a LoRA on every block) changes how *every* token is processed, so a DiD is
  only evidence that fine-tuning created something trigger-specific when it exceeds the fixed
  token's DiD.
* The DiD of the EOS log-prob at the output (with the base model given): per pair
  [log p_ft(EOS | trig) − log p_ft(EOS | ctrl)] − [the same in the base], mean with CI, beside
  the fixed token's: did fine-tuning make the *trigger* raise EOS, beyond what it did to an
  ordinary token?
* The activation difference lens (ADL): A = h_ft − h_base on identical trigger-free inputs
  (the control prompts), at the first positions (0..K−1; position 0 is the same token in
  every prompt, so its spread is zero) and at the decision positions: ‖mean A‖ with CI,
  relative to mean ‖h_ft‖, and its logit-lens readout through the fine-tuned model
  (U·norm(Â·s), s = mean ‖h_ft‖ there): top/bottom tokens, EOS z-score and rank.

When the base vocabulary lacked the trigger the caller added it with a mean-initialised row
(`stoplens.models.trigger.add_trigger`); ``base_trigger_added`` then says so, because the
base's "trigger" is then a fresh, untrained token. Must not: plot or write files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stoplens.analyses.layerwise import DeltaProfile, delta_profile
from stoplens.analyses.stats import (
    DEFAULT_CI,
    DEFAULT_N_BOOT,
    Estimate,
    EstimateSeries,
    bootstrap_mean,
    jsonable,
    percentile_interval,
    rank_of,
    resample_weights,
    zscore_of,
)
from stoplens.analyses.token_readout import TokenScore, readout, top_tokens
from stoplens.capture.deltaset import DeltaSet
from stoplens.capture.extract import unembed


@dataclass(frozen=True)
class DiffLensConfig:
    kind: str = "last"  # decision positions for the DiD: "last" or "post"
    adl_kinds: tuple[str, ...] = ("first", "last", "post")
    top_k: int = 10
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0
    ci: float = DEFAULT_CI


@dataclass(frozen=True, eq=False)
class ADLReadout:
    """ADL at one position kind, per captured layer [k]: ``norm_mean_diff`` ‖mean A‖ (mean
    over prompts and positions), ``rel`` ‖mean A‖ / mean ‖h_ft‖, ``eos_z`` / ``eos_rank`` of
    the readout, ``top`` / ``bottom`` tokens per layer."""

    positions: str
    norm_mean_diff: EstimateSeries
    rel: EstimateSeries
    eos_z: np.ndarray
    eos_rank: np.ndarray
    top: list[list[TokenScore]]
    bottom: list[list[TokenScore]]

    def to_dict(self) -> dict:
        return jsonable(self.__dict__)


@dataclass(frozen=True, eq=False)
class DiffLensResult:
    """Analysis 4 (``layers`` [k] residual indices)."""

    layers: list[int]
    kind: str
    n: int
    n_null: int
    base_trigger_added: bool
    did: DeltaProfile
    did_null: DeltaProfile
    ft_delta: DeltaProfile
    base_delta: DeltaProfile
    cos_ft_base: EstimateSeries
    adl: dict[str, ADLReadout]
    eos_id: int
    config: DiffLensConfig
    did_fixed: DeltaProfile | None = None
    eos_did: Estimate | None = None
    eos_did_fixed: Estimate | None = None

    def to_dict(self) -> dict:
        return jsonable(
            {
                "layers": self.layers,
                "kind": self.kind,
                "n": self.n,
                "n_null": self.n_null,
                "base_trigger_added": self.base_trigger_added,
                "did": self.did,
                "did_null": self.did_null,
                "did_fixed": self.did_fixed,
                "eos_did": self.eos_did,
                "eos_did_fixed": self.eos_did_fixed,
                "ft_delta": self.ft_delta,
                "base_delta": self.base_delta,
                "cos_ft_base": self.cos_ft_base,
                "adl": self.adl,
                "eos_id": self.eos_id,
                "config": self.config,
            }
        )


def _cos_means(a: torch.Tensor, b: torch.Tensor, cfg: DiffLensConfig) -> EstimateSeries:
    """Cosine between mean a and mean b per layer (a, b [n, k, P, d], pooled over P) with a
    bootstrap CI over prompts (shared resamples)."""
    n, k = a.shape[:2]
    w = resample_weights(n, cfg.n_boot, cfg.seed)
    val, lo, hi = np.zeros(k), np.zeros(k), np.zeros(k)
    for j in range(k):
        x = a[:, j].double().mean(1).numpy()
        y = b[:, j].double().mean(1).numpy()
        mx, my = x.mean(0), y.mean(0)
        den = np.linalg.norm(mx) * np.linalg.norm(my)
        val[j] = mx @ my / den if den > 0 else np.nan
        bx, by = w @ x, w @ y
        bden = np.linalg.norm(bx, axis=1) * np.linalg.norm(by, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            boot = np.where(bden > 0, (bx * by).sum(1) / bden, np.nan)
        lo[j], hi[j] = percentile_interval(boot, cfg.ci)
    return EstimateSeries(val, lo, hi, n)


def _adl(
    model: nn.Module, ds: DeltaSet, kind: str, tokenizer, eos: int, cfg: DiffLensConfig
) -> ADLReadout:
    h_ft = ds.control(kind)
    a = h_ft - ds.control(kind, "base")  # [n, k, P, d]
    n, k = a.shape[:2]
    w = resample_weights(n, cfg.n_boot, cfg.seed)
    vocab = len(tokenizer)
    vals = np.zeros((2, k))
    boots = np.zeros((2, cfg.n_boot, k))
    ro = []
    for j in range(k):
        x = a[:, j].double().mean(1).numpy()  # per prompt, mean over positions [n, d]
        hn = h_ft[:, j].double().norm(dim=-1).mean(1).numpy()  # [n]
        m = x.mean(0)
        vals[:, j] = np.linalg.norm(m), np.linalg.norm(m) / hn.mean()
        bn = np.linalg.norm(w @ x, axis=1)
        boots[0, :, j], boots[1, :, j] = bn, bn / (w @ hn)
        r = readout(model, torch.from_numpy(m), float(hn.mean()), vocab)
        r = r[: min(vocab, len(r))]
        ro.append(r)
    ser = []
    for i in range(2):
        lo, hi = percentile_interval(boots[i], cfg.ci)
        ser.append(EstimateSeries(vals[i], lo, hi, n))
    return ADLReadout(
        positions=kind,
        norm_mean_diff=ser[0],
        rel=ser[1],
        eos_z=np.array([zscore_of(r, eos) for r in ro]),
        eos_rank=np.array([rank_of(r, eos) for r in ro]),
        top=[top_tokens(r, tokenizer, cfg.top_k) for r in ro],
        bottom=[top_tokens(r, tokenizer, cfg.top_k, largest=False) for r in ro],
    )


@torch.no_grad()
def _eos_logprob(model: nn.Module, h: torch.Tensor, eos: int, chunk: int = 256) -> np.ndarray:
    """log p(EOS) of the output lens (= the model's own logits) of residual[L] rows h [n, d]."""
    out = []
    for c in h.split(chunk):
        out.append(torch.log_softmax(unembed(model, c).double(), -1)[:, eos].cpu().numpy())
    return np.concatenate(out)


def _eos_did(
    model: nn.Module, base: nn.Module, ds: DeltaSet, eos: int, fixed: bool, cfg: DiffLensConfig
) -> Estimate:
    """Mean over pairs of the EOS log-prob DiD at the output (module docstring), with CI."""
    j = ds.layer_pos(ds.n_layers)

    def side(name: str) -> np.ndarray:
        if fixed:
            t, c = ds.fixed_triggered("last", name), ds.fixed_control("last", name)
        else:
            t, c = ds.triggered("last", name), ds.control("last", name)
        m = model if name == "ft" else base
        return _eos_logprob(m, t[:, j, 0], eos) - _eos_logprob(m, c[:, j, 0], eos)

    est = bootstrap_mean(side("ft") - side("base"), cfg.n_boot, cfg.seed, cfg.ci)
    assert isinstance(est, Estimate)
    return est


def diff_lens(
    model: nn.Module,
    ds: DeltaSet,
    tokenizer,
    *,
    eos_id: int | None = None,
    config: DiffLensConfig | None = None,
    base_model: nn.Module | None = None,
) -> DiffLensResult:
    """Analysis 4 on a `DeltaSet` captured with a base model; ``model`` is the fine-tuned
    model (its final norm and unembedding read the ADL); ``base_model`` (optional) reads the
    base's own output for the EOS DiD. See module docstring."""
    cfg = config or DiffLensConfig()
    if not ds.has_base:
        raise ValueError("diff_lens needs a DeltaSet captured with a base model (base=...)")
    if cfg.kind not in ("last", "post"):
        raise ValueError("DiffLensConfig.kind must be 'last' or 'post'")
    eos = int(tokenizer.eos_token_id if eos_id is None else eos_id)
    kw: dict[str, Any] = {"n_boot": cfg.n_boot, "seed": cfg.seed, "ci": cfg.ci}
    kind = cfg.kind
    d_ft, d_base = ds.delta(kind), ds.delta(kind, "base")
    h = ds.control(kind)
    did = delta_profile(d_ft - d_base, h, **kw)
    did_null = delta_profile(
        ds.null_delta(kind) - ds.null_delta(kind, "base"), ds.null_control(kind), **kw
    )
    did_fixed = None
    if ds.has_fixed and ds.base_fixed is not None:
        did_fixed = delta_profile(
            ds.fixed_delta(kind) - ds.fixed_delta(kind, "base"), ds.fixed_control(kind), **kw
        )
    eos_did = eos_did_fixed = None
    if base_model is not None and ds.n_layers in ds.layers:
        eos_did = _eos_did(model, base_model, ds, eos, False, cfg)
        if did_fixed is not None:
            eos_did_fixed = _eos_did(model, base_model, ds, eos, True, cfg)
    return DiffLensResult(
        layers=list(ds.layers),
        kind=kind,
        n=ds.n,
        n_null=ds.n_null,
        base_trigger_added=ds.base_trigger_added,
        did=did,
        did_null=did_null,
        ft_delta=delta_profile(d_ft, h, **kw),
        base_delta=delta_profile(d_base, ds.control(kind, "base"), **kw),
        cos_ft_base=_cos_means(d_ft, d_base, cfg),
        adl={k: _adl(model, ds, k, tokenizer, eos, cfg) for k in cfg.adl_kinds},
        eos_id=eos,
        config=cfg,
        did_fixed=did_fixed,
        eos_did=eos_did,
        eos_did_fixed=eos_did_fixed,
    )
