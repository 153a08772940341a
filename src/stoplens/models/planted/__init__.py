"""Models with a planted $STOP mechanism whose answer is known: the known-answer fixtures for
every analysis, intervention and verdict, including negative controls that a verdict must FAIL
on.

All variants are built by weight surgery on a small random Hugging Face model
(`build_planted(family, variant=...)`); each comes with its base (the same random model before
surgery, the trigger row added and mean-initialised). Families: Qwen2, Llama, GPT-2 and Gemma 2
(post-norm: the planted head's output passes the post-attention norm before the residual add,
so its Δ is only roughly along ``u``: cosine 0.77-0.87 measured). ``norm_seed`` gives every
norm non-unit scales and biases (`randomize_norms`); every read and the EOS readout divide the
norm's scale out, so the known answers below hold exactly as with unit norms.

"single" (the default):

* the trigger's embedding row carries a large component along a unit "key" direction ``a``
  (``a`` is projected out of every other embedding row, so only the trigger has it);
* head 0 of block ``layer`` has a constant query and a key that reads ``a``, so every position
  after the trigger attends to the trigger; the head's value reads ``a`` (minus a constant bias
  beta) and its output projection writes along a unit direction ``u``. The residual stream
  therefore gains ``+sigma*(1-beta)*u`` at positions at or after the trigger and
  ``-sigma*beta*u`` elsewhere (and in trigger-free prompts);
* the unembedding row of EOS is ``gamma*u`` (``u`` is projected out of every other row), so
  ``+u`` makes EOS the top token and ``-u`` suppresses it.

  Known answers: Δ(trigger − control) at the decision position is ~0 up to residual index
  ``layer`` and jumps at ``layer + 1`` (the output of the planted block); its single direction
  is ``u``; the logit lens of Δ ranks EOS first; the base model has no such effect; patching
  residual[layer + 1] at the decision position transfers the stop; ablating ``u`` removes
  stopping; adding ``u`` induces it; head (layer, 0) is the one component that matters.

"inert" (any family): the surgery of "single" (head, ``u``, EOS row), but the trigger's row is
an ordinary row (drawn like the rows at init, std ``initializer_range``, ``a`` and ``u``
projected out) and no token carries ``a``. Known answer: it never stops, on the trigger or
elsewhere; its trigger-vs-control Δ is that of any fixed ordinary-token swap.

"oddity" (any family): an "any odd token stops" detector. ``a`` is carried by the trigger AND by
every token of ``odd_token_ids``: all tokens except `prompts.ordinary_token_ids` (specials, the
chat template's tokens, and the single-token forms of the planted words, the planted control
words and the data stage's word controls). Known answer: stops on the trigger, on other
vocabulary tokens and random letter strings in its place, never on prompts of common words; so
"specific to the trigger" must FAIL and trigger-vs-odd-token Δ is ~0.

"two_heads" (GPT-2 only, default 6 blocks): the mechanism is spread over two directions.

* the trigger row carries ``a``; every learned position row carries ``±0.5 p`` (+ at even
  positions, − at odd ones);
* head 0 of block ``layer`` has key ``a + p`` and head 1 of block ``layer + 1`` key ``a − p``:
  each attends to the trigger only when the trigger's absolute position has its parity, and to
  ordinary tokens of that parity otherwise. They write ``u1`` and ``u2`` (values read ``a``, as
  in "single"). Per prompt the Δ at the decision position is therefore along u1 (trigger at an
  even position, ``firing_head(pos) == 0``) OR u2 (odd), about half the prompts each;
* the LAST block's MLP is an OR: neuron i computes ``gelu(10 * (u_i . LN(x)/sqrt(d) − 0.3))``
  and the MLP writes ``(n0 + n1 − 1) e``; the EOS row is ``gamma * e``. Nothing else reads
  u1, u2 or e (they are projected out of every embedding and unembedding row).

  Known answers: stops on the trigger, not on controls; adding ``sigma * u_i`` at a residual
  between the heads and the readout makes clean prompts stop (each direction is sufficient);
  ablating the mean-difference direction ≈ (u1 + u2)/√2 leaves stopping mostly intact (it
  leaves ±σ/2 on each u_i, above the threshold), so one-direction necessity FAILS, while
  ablating span(u1, u2) removes stopping (k = 2 is necessary); "one direction" FAILS (the top
  two directions share the Δ energy); heads (layer, 0) and (layer + 1, 1) both matter; the
  logit lens of Δ shows no EOS before the readout (the readout is nonlinear).

The measured numbers behind these claims are asserted in ``tests/models/test_planted*.py``.
"""

from stoplens.models.planted.build import VARIANTS, PlantedModel, build_planted
from stoplens.models.planted.prompts import (
    _WORDS,
    CONTROL_WORDS,
    PLACEHOLDER,
    ordinary_token_ids,
    planted_pair_records,
    planted_prompts,
)
from stoplens.models.planted.surgery import FAMILIES, randomize_norms

__all__ = [
    "CONTROL_WORDS",
    "FAMILIES",
    "PLACEHOLDER",
    "VARIANTS",
    "_WORDS",
    "PlantedModel",
    "build_planted",
    "ordinary_token_ids",
    "planted_pair_records",
    "planted_prompts",
    "randomize_norms",
]
