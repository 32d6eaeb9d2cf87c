"""Text-to-audio alignment: the training aids that make cross-attention find the text, and the
measurements that say whether it did.

A decoder that predicts 75 frames/s from the frames before it can reach a low loss without
ever reading its text. Two aids, as in RAD-TTS's "One TTS Alignment to Rule Them All" and
NeMo's MagpieTTS, make the text the easy path early in training:
- a beta-binomial prior (a soft diagonal from the first token to the last) added to every
  cross-attention logit, held for `align.prior_hold_steps` and annealed away by
  `align.prior_end_step`, so that sampling, which does not know the length, needs no prior;
- a forward-sum (CTC) loss on the attention itself (without the prior): the likelihood of
  all monotonic paths that visit every text token in order.

Measured on the demo corpus, neither is enough: once the annealed prior is gone, attention
collapses onto one token (and the CTC loss is satisfied by rushing through the text in the
last frames). A prior that stays (`model.attention_prior`) is what made the demo read; sampling
then spreads it over the length the model predicts (`log_prior_at`).

`attention_sums` gives the focus, monotonicity and coverage of each layer and head, and
`best_head` picks the head that aligns.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
from jax import numpy as jnp
from jax.scipy.special import betaln, gammaln

from jtts.config import AlignConfig


def _log_pmf(
    t: jnp.ndarray, steps: jnp.ndarray, n: jnp.ndarray, k: jnp.ndarray, scaling: float
) -> jnp.ndarray:
    """log BetaBinomial(k | n, scaling * t, scaling * (steps - t + 1)), 0 outside the row."""
    valid = (t <= steps) & (k <= n)
    a = scaling * t
    b = scaling * jnp.maximum(steps - t + 1.0, 1.0)
    k = jnp.minimum(k, n)
    log_pmf = (
        gammaln(n + 1.0)
        - gammaln(k + 1.0)
        - gammaln(n - k + 1.0)
        + betaln(k + a, n - k + b)
        - betaln(a, b)
    )
    return jnp.where(valid, log_pmf, 0.0)


def beta_binomial_log_prior(
    steps_B: jnp.ndarray, tokens_B: jnp.ndarray, t: int, s: int, scaling: float
) -> jnp.ndarray:
    """log P(token s | step t) of RAD-TTS's beta-binomial prior, float32 BxTxS.

    Row b spreads its `tokens_B[b]` tokens over its `steps_B[b]` steps; outside them the prior
    is 0 (no bias), and masking does the rest.
    """
    return _log_pmf(
        jnp.arange(1, t + 1, dtype=jnp.float32)[None, :, None],
        steps_B.astype(jnp.float32)[:, None, None],
        tokens_B.astype(jnp.float32)[:, None, None] - 1.0,
        jnp.arange(s, dtype=jnp.float32)[None, None, :],
        scaling,
    )


def log_prior_at(
    steps_T: jnp.ndarray, steps_B: jnp.ndarray, tokens_B: jnp.ndarray, s: int, scaling: float
) -> jnp.ndarray:
    """Rows `steps_T` (0-based decoder steps) of `beta_binomial_log_prior`, BxTxS, for
    sampling with predicted `steps_B`. Past a row's last step the prior stays at that step's,
    which sits on the last token, instead of vanishing."""
    steps_Bx1x1 = jnp.maximum(steps_B, 1).astype(jnp.float32)[:, None, None]
    t_1xTx1 = jnp.asarray(steps_T, jnp.float32)[None, :, None] + 1.0
    return _log_pmf(
        jnp.minimum(t_1xTx1, steps_Bx1x1),
        steps_Bx1x1,
        tokens_B.astype(jnp.float32)[:, None, None] - 1.0,
        jnp.arange(s, dtype=jnp.float32)[None, None, :],
        scaling,
    )


def prior_weight(cfg: AlignConfig, step: jnp.ndarray) -> jnp.ndarray:
    """1 until `prior_hold_steps`, then linearly down to 0 at `prior_end_step`."""
    if not cfg.prior:
        return jnp.zeros((), jnp.float32)
    span = max(cfg.prior_end_step - cfg.prior_hold_steps, 1)
    return jnp.clip((cfg.prior_end_step - step) / span, 0.0, 1.0).astype(jnp.float32)


def prior_bias(log_prior_BxTxS: jnp.ndarray, weight: jnp.ndarray) -> jnp.ndarray:
    """log(w * prior + (1 - w)): the full prior at w = 1, no bias at all at w = 0."""
    w = jnp.clip(weight, 0.0, 1.0)
    return jnp.logaddexp(jnp.log(w) + log_prior_BxTxS, jnp.log1p(-w))


def head_mean_log_probs(attn_logits_LxBxHxTxS: jnp.ndarray) -> jnp.ndarray:
    """log of the head-averaged attention probabilities, LxBxTxS."""
    logp = jax.nn.log_softmax(attn_logits_LxBxHxTxS, axis=-1)
    return jax.nn.logsumexp(logp, axis=2) - np.log(logp.shape[2])


def forward_sum_loss(
    log_probs_LxBxTxS: jnp.ndarray,
    step_mask_BxT: jnp.ndarray,
    text_mask_BxS: jnp.ndarray,
    row_mask_B: jnp.ndarray,
    blank_logprob: float,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(sum over layers and rows of -log P(monotonic paths) / text length, number of terms).

    CTC with text positions 1..S as the labels and a constant blank, as RAD-TTS's
    ForwardSumLoss: a path may stay on a token for many steps but must visit all in order.
    """
    layers, b, t, s = log_probs_LxBxTxS.shape
    text_mask_BxS = text_mask_BxS.astype(bool)
    blank = jnp.full((layers, b, t, 1), blank_logprob, jnp.float32)
    masked = jnp.where(text_mask_BxS[None, :, None, :], log_probs_LxBxTxS, -1e4)
    logits = jnp.concatenate([blank, masked], axis=-1).reshape(layers * b, t, s + 1)
    labels = jnp.broadcast_to(jnp.arange(1, s + 1, dtype=jnp.int32), (layers * b, s))
    label_pad = jnp.tile(~text_mask_BxS, (layers, 1)).astype(jnp.float32)
    logit_pad = jnp.tile(~step_mask_BxT.astype(bool), (layers, 1)).astype(jnp.float32)
    nll = optax.ctc_loss(logits, logit_pad, labels, label_pad, blank_id=0)
    per_row = nll / jnp.maximum(jnp.tile(text_mask_BxS.sum(axis=1), layers), 1)
    rows = jnp.tile(row_mask_B.astype(jnp.float32), layers)
    return jnp.sum(per_row * rows), jnp.sum(rows)


def attention_sums(
    attn_logits_LxBxHxTxS: jnp.ndarray, step_mask_BxT: jnp.ndarray, text_mask_BxS: jnp.ndarray
) -> dict[str, jnp.ndarray]:
    """Per layer and head sums over a batch, to be added over batches then divided:
    - focus: the largest attention weight of each step (1 = all on one token);
    - monotone: steps whose argmax token is not before the previous step's;
    - coverage: the fraction of a row's tokens that are some step's argmax;
    with their denominators (steps, pairs of consecutive steps, rows)."""
    p = jax.nn.softmax(attn_logits_LxBxHxTxS, axis=-1)
    step_mask = step_mask_BxT.astype(jnp.float32)[None, :, None, :]
    pair_mask = step_mask[..., 1:] * step_mask[..., :-1]
    top = jnp.argmax(p, axis=-1)
    s = p.shape[-1]
    visited = (jnp.arange(s)[None, None, None, None, :] == top[..., None]) & (
        step_mask[..., None] > 0
    )
    text_lengths = jnp.maximum(text_mask_BxS.sum(axis=1), 1)[None, :, None]
    rows = (step_mask_BxT.sum(axis=1) > 0).astype(jnp.float32)[None, :, None]
    return {
        "focus": jnp.sum(p.max(axis=-1) * step_mask, axis=(1, 3)),
        "monotone": jnp.sum((top[..., 1:] >= top[..., :-1]) * pair_mask, axis=(1, 3)),
        "coverage": jnp.sum(visited.any(axis=3).sum(axis=-1) / text_lengths * rows, axis=1),
        "steps": jnp.sum(step_mask),
        "pairs": jnp.sum(pair_mask),
        "rows": jnp.sum(rows),
    }


def best_head(sums: dict[str, np.ndarray]) -> dict[str, float]:
    """Focus, monotonicity and coverage of the head with the largest focus x coverage (a head
    stuck on one token has high focus but covers nothing), with its layer and index."""
    focus = sums["focus"] / np.maximum(sums["steps"], 1)
    monotone = sums["monotone"] / np.maximum(sums["pairs"], 1)
    coverage = sums["coverage"] / np.maximum(sums["rows"], 1)
    layer, head = np.unravel_index(int(np.argmax(focus * coverage)), focus.shape)
    return {
        "focus": float(focus[layer, head]),
        "monotonicity": float(monotone[layer, head]),
        "coverage": float(coverage[layer, head]),
        "layer": int(layer),
        "head": int(head),
    }


# Decoding that follows its own attention (NeMo MagpieTTS's inference-time prior): each step's
# cross-attention is weighted around the text position the decode has reached, so it cannot
# jump back (repeating words) or ahead (skipping them). Weights of the positions -1 .. +2 from
# it, and of every other position. Magpie weights +1 above the reached one (1 against 0.8) to
# nudge it on; measured here (models/README.md) the nudge skips words, so the two are equal.
FOLLOW_WEIGHTS = (0.2, 1.0, 1.0, 0.8)
FOLLOW_FLOOR = 1e-5
# Steps the position may stay on one text token before the window moves past it (an attention
# sink): a Whisper token is a word or a piece of one, 16 frames on average, rarely over 60.
FOLLOW_MAX_DWELL = 64
# A followed decode may end (EOS) once its position is among the text's last this many tokens
# (the last words and <|endoftext|>), not before: an EOS sampled early cuts the sentence off.
FOLLOW_END_TOKENS = 3


def follow_log_prior(pos_BxT: jax.Array, s: int) -> jax.Array:
    """The window's log-weights over `s` text positions for decoder steps whose reached
    position is `pos_BxT`, BxTxS; a position < 0 (not known yet) adds nothing."""
    offset = jnp.arange(s)[None, None, :] - pos_BxT[..., None] + 1
    inside = (offset >= 0) & (offset < len(FOLLOW_WEIGHTS))
    weights = jnp.asarray(FOLLOW_WEIGHTS, jnp.float32)[jnp.clip(offset, 0, len(FOLLOW_WEIGHTS) - 1)]
    log_w = jnp.log(jnp.where(inside, weights, FOLLOW_FLOOR))
    return jnp.where(pos_BxT[..., None] < 0, 0.0, log_w)


def follow_position(
    attn_LxBxHxS: jax.Array, pos_B: jax.Array, dwell_B: jax.Array, lengths_B: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(position, steps spent on it) after a step whose cross-attention logits are
    `attn_LxBxHxS`: the most attended of the window's positions from the current one on
    (past it once it has dwelt `FOLLOW_MAX_DWELL` steps), or of every position while none is
    known; never behind the current one. The logits should carry the model's own prior but
    not the window, which would otherwise move the position by itself."""
    p_BxS = jax.nn.softmax(attn_LxBxHxS, axis=-1).mean(axis=(0, 2))
    last_B = jnp.maximum(lengths_B, 1) - 1
    start_B = jnp.minimum(pos_B + (dwell_B >= FOLLOW_MAX_DWELL), last_B)
    s_1xS = jnp.arange(p_BxS.shape[-1])[None, :]
    ahead = len(FOLLOW_WEIGHTS) - 1  # the window's positions at and after the current one
    window = (s_1xS >= start_B[:, None]) & (s_1xS < start_B[:, None] + ahead)
    window = jnp.where(pos_B[:, None] < 0, True, window) & (s_1xS <= last_B[:, None])
    new_B = jnp.argmax(jnp.where(window, p_BxS, -1.0), axis=-1).astype(jnp.int32)
    return new_B, jnp.where(new_B == pos_B, dwell_B + 1, 0).astype(jnp.int32)
