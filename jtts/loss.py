"""The training loss as per-codebook sums, with the alignment terms added to it.

Sums (not means) let micro-batches and evaluation batches add up; the step divides by
normalisers known from the masks alone. The model owns its alignment prior (`model.prior`,
`model.prior_bias`): here it is only spread over a batch's target steps, or replaced by
`jtts.alignment`'s annealed beta-binomial training aid.
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import nnx
from jax import numpy as jnp

from jtts import conditioning
from jtts.alignment import (
    beta_binomial_log_prior,
    forward_sum_loss,
    head_mean_log_probs,
    prior_bias,
    prior_weight,
)
from jtts.config import Config
from jtts.patterns import Pattern


def decoder_io(
    batch: dict[str, jax.Array], pattern: Pattern
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(inputs_BxKxS, targets_BxKxS, mask_BxKxS) of a batch.

    The mask drops filler rows and the EOS target of cropped utterances (their audio goes on
    past the crop, so predicting an end there would teach the model to stop early).
    """
    seq_BxKxS = pattern.apply(batch["codes"], batch["lengths"])
    inputs_BxKxS, targets_BxKxS, mask_BxKxS = pattern.decoder_io(seq_BxKxS)
    no_eos_Bx1x1 = ~batch["has_eos"][:, None, None]
    mask_BxKxS &= batch["valid"][:, None, None] & ~((targets_BxKxS == pattern.eos) & no_eos_Bx1x1)
    return inputs_BxKxS, targets_BxKxS, mask_BxKxS


def ce_sums(
    logits_BxSxKxV: jax.Array, targets_BxKxS: jax.Array, mask_BxKxS: jax.Array
) -> dict[str, jax.Array]:
    """Per-codebook sums over a batch: ce_K, correct_K, count_K (targets), zsq_K.

    Sums (not means) let micro-batches and eval batches add up.
    """
    logits_BxSxKxV = logits_BxSxKxV.astype(jnp.float32)
    targets_BxSxK = targets_BxKxS.transpose(0, 2, 1)
    mask_BxSxK = mask_BxKxS.transpose(0, 2, 1).astype(jnp.float32)
    max_BxSxK = jnp.max(logits_BxSxKxV, axis=-1)
    lse_BxSxK = max_BxSxK + jnp.log(
        jnp.sum(jnp.exp(logits_BxSxKxV - max_BxSxK[..., None]), axis=-1)
    )
    target_logit = jnp.take_along_axis(logits_BxSxKxV, targets_BxSxK[..., None], axis=-1)[..., 0]
    # Top-1 by comparison with the max (shared with logsumexp): XLA:CPU's argmax, a
    # value+index reduction, costs as much as the whole loss.
    correct = (target_logit >= max_BxSxK).astype(jnp.float32)
    return {
        "ce": jnp.sum((lse_BxSxK - target_logit) * mask_BxSxK, axis=(0, 1)),
        "correct": jnp.sum(correct * mask_BxSxK, axis=(0, 1)),
        "count": jnp.sum(mask_BxSxK, axis=(0, 1)),
        "zsq": jnp.sum(lse_BxSxK**2 * mask_BxSxK, axis=(0, 1)),
    }


def align_layers(cfg: Config) -> list[int]:
    """The decoder layers the alignment aids act on (`align.layers`; default all)."""
    return list(cfg.align.layers) if cfg.align.layers else list(range(cfg.model.dec_layers))


def own_prior_bias(
    model: nnx.Module, cond: conditioning.Cond, mask_BxKxS: jax.Array
) -> jax.Array | None:
    """The model's own alignment log-prior (BxTxS, `model.prior_bias`) spread over each row's
    target steps (`decoder_io`'s mask); None for a model without one."""
    prior = model.prior(cond, mask_BxKxS.any(axis=1).sum(axis=1))
    return model.prior_bias(prior, jnp.arange(mask_BxKxS.shape[2]), cond.text_BxS.shape[1])


def alignment_bias(
    cfg: Config, model: nnx.Module, cond: conditioning.Cond, mask_BxKxS: jax.Array, step: jax.Array
) -> jax.Array | None:
    """The log-prior (BxTxS) for a batch's condition and target mask (`decoder_io`): the
    model's own (`own_prior_bias`), or the beta-binomial training aid annealed to its weight
    at `step`; None when there is neither."""
    if cfg.model.attention_prior is not None:
        return own_prior_bias(model, cond, mask_BxKxS)
    if not cfg.align.prior:
        return None
    log_prior = beta_binomial_log_prior(
        mask_BxKxS.any(axis=1).sum(axis=1),
        cond.text_lengths_B,
        mask_BxKxS.shape[2],
        cond.text_BxS.shape[1],
        cfg.align.prior_scaling,
    )
    return prior_bias(log_prior, prior_strength(cfg, step))


def prior_strength(cfg: Config, step: jax.Array) -> jax.Array:
    """The weight the prior has at `step`: 1 for the model's own, else the aid's schedule."""
    if cfg.model.attention_prior is not None:
        return jnp.ones((), jnp.float32)
    return prior_weight(cfg.align, step)


def length_sums(
    model: nnx.Module, batch: dict[str, Any], text_BxSxD: jax.Array
) -> dict[str, jax.Array]:
    """The length head's squared log error and absolute relative error on the forward's text
    encoding, summed over the rows whose whole utterance is in the batch ("length_rows")."""
    rows_B = (batch["valid"] & batch["has_eos"]).astype(jnp.float32)
    predicted_B = model.frames_of(text_BxSxD, batch["cond"].text_mask_BxS)
    true_B = jnp.maximum(batch["lengths"], 1).astype(jnp.float32)
    log_err_B = jnp.log1p(predicted_B) - jnp.log1p(true_B)
    return {
        "length": jnp.sum(rows_B * log_err_B**2),
        "length_abs_rel": jnp.sum(rows_B * jnp.abs(predicted_B / true_B - 1.0)),
        "length_rows": jnp.sum(rows_B),
    }


def loss_sums(
    model: nnx.Module,
    batch: dict[str, Any],
    pattern: Pattern,
    *,
    cfg: Config | None = None,
    dropout_rng: jax.Array | None = None,
    corrupt_rng: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """`ce_sums` of the teacher-forced forward; with a `cfg` whose align.ctc_weight > 0 also
    the forward-sum alignment loss summed over its rows and layers ("align"). A batch's
    "attn_bias" (see `alignment_bias`) is added to the cross-attention logits. With
    `corrupt_rng`, decoder input steps are replaced by PAD with P = align.input_dropout: the
    audio context becomes unreliable, so the text is worth reading (Tacotron's prenet
    dropout, NeMo's decoder input dropout). A model with `pron_head` adds its phoneme CTC
    loss ("pron", `pron_sums`), and that of the batch's text-only rows ("pron_text"), which
    the text encoder reads for this head alone."""
    inputs_BxKxS, targets_BxKxS, mask_BxKxS = decoder_io(batch, pattern)
    if corrupt_rng is not None and cfg is not None and cfg.align.input_dropout > 0:
        b, _, s = inputs_BxKxS.shape
        hit_BxS = jax.random.bernoulli(corrupt_rng, cfg.align.input_dropout, (b, s))
        hit_BxS &= jnp.arange(s)[None, :] > 0  # step 0 keeps its BOS
        inputs_BxKxS = jnp.where(hit_BxS[:, None, :], pattern.pad, inputs_BxKxS)
    ctc = cfg is not None and cfg.align.ctc_weight > 0
    logits_BxSxKxV, attn, text_BxSxD = model.forward(
        batch["cond"],
        inputs_BxKxS,
        attn_bias_BxTxS=batch.get("attn_bias"),
        dropout_rng=dropout_rng,
        with_attention=ctc,
    )
    sums = ce_sums(logits_BxSxKxV, targets_BxKxS, mask_BxKxS)
    if cfg is not None and cfg.model.attention_prior is not None:
        sums["length"] = length_sums(model, batch, text_BxSxD)["length"]
    if cfg is not None and cfg.model.pron_head:
        sums["pron"] = pron_sums(model, text_BxSxD, batch["cond"].text_mask_BxS, batch)
        if "pron_text" in batch:
            t = batch["pron_text"]
            text_rng = None if dropout_rng is None else jax.random.fold_in(dropout_rng, 2)
            enc_RxSxD = model.encode_text(conditioning.Text(t["ids"], t["mask"]), text_rng)
            sums["pron_text"] = pron_sums(model, enc_RxSxD, t["mask"], t)
    if ctc:
        cond = batch["cond"]
        sums["align"], _ = forward_sum_loss(  # its row count is known before: norm["align"]
            head_mean_log_probs(attn[jnp.asarray(align_layers(cfg))]),
            mask_BxKxS.any(axis=1),
            cond.text_mask_BxS,
            batch["valid"] & ~cond.drop_B,
            cfg.align.blank_logprob,
        )
    return sums


def pron_labels(rows: dict[str, Any]) -> jax.Array:
    """The phonemes `pron_sums` sums over `rows` (a batch, or its "pron_text"): its
    per-phoneme normaliser."""
    return jnp.sum((rows["phones"] > 0) & rows["phones_ok"][:, None]).astype(jnp.float32)


def pron_sums(
    model: nnx.Module, text_BxSxD: jax.Array, mask_BxS: jax.Array, rows: dict[str, Any]
) -> jax.Array:
    """The phoneme CTC loss (optax's, of `model.phoneme_logits` of the text encoding) against
    `rows`' "phones" (0 after each row's end), summed over the rows whose phonemes fit their
    text ("phones_ok")."""
    phones_BxS = rows["phones"]
    per_row_B = optax.ctc_loss(
        model.phoneme_logits(text_BxSxD),
        1.0 - mask_BxS.astype(jnp.float32),
        phones_BxS,
        (phones_BxS == 0).astype(jnp.float32),
    )
    return jnp.sum(jnp.where(rows["phones_ok"], per_row_B, 0.0))
