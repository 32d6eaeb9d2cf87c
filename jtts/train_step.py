"""The jitted training and evaluation steps.

The model is split once (`nnx.split`) into a static graphdef and a pure dict of parameters;
the step merges them inside `jax.jit`, so each batch shape is traced and compiled once and the
train state (`jtts.optim`) is donated, sharded and checkpointed as is. Randomness comes from
`fold_in(key(seed), step)`: a resumed run draws exactly the keys an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import nnx
from jax import numpy as jnp

from jtts import conditioning
from jtts.alignment import attention_sums
from jtts.config import Config
from jtts.loss import (
    align_layers,
    alignment_bias,
    ce_sums,
    decoder_io,
    length_sums,
    loss_sums,
    own_prior_bias,
    prior_strength,
    pron_labels,
    pron_sums,
)
from jtts.mesh import batch_sharding, replicated
from jtts.model import Forward
from jtts.optim import TrainState, ema_update, lr_schedule


def _micro_batches(batch: dict[str, Any], n: int) -> dict[str, Any]:
    """[B, ...] -> [n, B/n, ...] taking every n-th row, so each device keeps its own rows."""
    return jax.tree.map(lambda v: v.reshape(v.shape[0] // n, n, *v.shape[1:]).swapaxes(0, 1), batch)


def _per_phone(total: jax.Array, phones: jax.Array) -> jax.Array:
    """A phoneme loss per phoneme; NaN (not logged) for rows without any, such as the
    text-only rows of a batch whose text no line fits."""
    return jnp.where(phones > 0, total / jnp.maximum(phones, 1.0), jnp.nan)


class TrainStep:
    """`state, metrics = step(state, batch)`; compiled once per batch shape.

    `traces` counts Python traces of the step, so tests can assert there is no retracing.
    """

    def __init__(
        self,
        cfg: Config,
        graphdef: nnx.GraphDef,
        tx: optax.GradientTransformation,
        mesh: jax.sharding.Mesh,
        shardings: Any,
    ):
        self.cfg, self.graphdef, self.tx = cfg, graphdef, tx
        self.schedule = lr_schedule(cfg.optim, cfg.train.steps)
        self.weights_K = jnp.asarray(cfg.codebook_weights, jnp.float32)
        self.traces = 0
        self._jitted = jax.jit(
            self._step,
            in_shardings=(shardings, batch_sharding(mesh)),
            out_shardings=(shardings, replicated(mesh)),
            donate_argnums=0,
        )

    def __call__(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, Any]:
        return self._jitted(state, batch)

    def _grads(
        self, params: Any, batch: dict[str, jax.Array], key: jax.Array, norm: dict[str, jax.Array]
    ) -> tuple[Any, dict[str, jax.Array]]:
        """Gradient of the batch's share of the loss (sums / `norm`) and its loss sums."""
        dropout_rng = key if self.cfg.model.dropout > 0 else None

        def loss_fn(params: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
            model = nnx.merge(self.graphdef, params)
            sums = loss_sums(
                model,
                batch,
                model.pattern,
                cfg=self.cfg,
                dropout_rng=dropout_rng,
                corrupt_rng=jax.random.fold_in(key, 1),
            )
            loss = jnp.sum(self.weights_K * sums["ce"]) / norm["ce"]
            loss += self.cfg.optim.z_loss * jnp.sum(sums["zsq"]) / norm["count"]
            if "align" in sums:
                loss += self.cfg.align.ctc_weight * sums["align"] / norm["align"]
            if "length" in sums:
                loss += sums["length"] / norm["length"]
            if "pron" in sums:  # per phoneme of the speech and text-only rows together
                pron = sums["pron"] + sums.get("pron_text", 0.0)
                loss += self.cfg.align.pron_weight * pron / norm["pron"]
            return loss, sums

        return jax.grad(loss_fn, has_aux=True)(params)

    def _step(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, Any]:
        self.traces += 1
        params, step = state["params"], state["step"]
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), step)
        drop_key, key = jax.random.split(key)
        # Drawn for the whole batch, so accumulation sees the same masks as one big batch.
        cond = conditioning.guidance_dropout(batch["cond"], self.cfg.model, drop_key)
        batch = {**batch, "cond": cond}
        model = nnx.merge(self.graphdef, params)  # for its pattern and prior: no computation
        mask_BxKxS = decoder_io(batch, model.pattern)[2]
        bias = alignment_bias(self.cfg, model, batch["cond"], mask_BxKxS, step)
        if bias is not None:
            batch["attn_bias"] = bias
        # The loss normaliser depends only on the masks, so it is known before any forward
        # pass and gradient accumulation sums to exactly the full-batch gradient.
        mask_sums = jnp.sum(mask_BxKxS, axis=(0, 2)).astype(jnp.float32)
        align_rows = jnp.sum(batch["valid"] & ~batch["cond"].drop_B) * len(align_layers(self.cfg))
        norm = {
            "ce": jnp.maximum(jnp.sum(self.weights_K * mask_sums), 1.0),
            "count": jnp.maximum(jnp.sum(mask_sums), 1.0),
            "align": jnp.maximum(align_rows.astype(jnp.float32), 1.0),
            "length": jnp.maximum(jnp.sum(batch["valid"] & batch["has_eos"]), 1).astype(
                jnp.float32
            ),
        }
        n_phones = {}  # phonemes of the batch's rows ("pron") and of its text-only rows
        if self.cfg.model.pron_head:
            n_phones["pron"] = pron_labels(batch)
            if "pron_text" in batch:
                n_phones["pron_text"] = pron_labels(batch["pron_text"])
            norm["pron"] = jnp.maximum(sum(n_phones.values()), 1.0)
        n_micro = self.cfg.optim.grad_accum
        if n_micro == 1:
            grads, sums = self._grads(params, batch, key, norm)
        else:

            def body(carry: Any, xs: Any) -> tuple[Any, None]:
                i, micro = xs
                g, s = self._grads(params, micro, jax.random.fold_in(key, i), norm)
                return jax.tree.map(jnp.add, carry, (g, s)), None

            zeros = jax.tree.map(
                jnp.zeros_like, jax.eval_shape(self._grads, params, batch, key, norm)
            )
            xs = (jnp.arange(n_micro), _micro_batches(batch, n_micro))
            (grads, sums), _ = jax.lax.scan(body, zeros, xs)

        loss = jnp.sum(self.weights_K * sums["ce"]) / norm["ce"]
        grad_norm = optax.tree.norm(grads)
        lr = self.schedule(step)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def update(operands: Any) -> Any:
            grads, opt_state, params = operands
            updates, opt_state = self.tx.update(grads, opt_state, params)
            return optax.apply_updates(params, jax.tree.map(lambda u: lr * u, updates)), opt_state

        def keep(operands: Any) -> Any:
            _, opt_state, params = operands
            return params, opt_state

        # A non-finite step leaves params and optimizer state untouched (no NaN ever lands
        # in the state); `cond` skips the update instead of selecting every element.
        operands = (grads, state["opt_state"], params)
        new_params, opt_state = jax.lax.cond(finite, update, keep, operands)
        new_state = {
            "params": new_params,
            "opt_state": opt_state,
            "step": step + 1,
            "rng": state["rng"],
            "skipped": state["skipped"] + (~finite).astype(jnp.int32),
        }
        if "ema" in state:
            new_state["ema"] = ema_update(state["ema"], new_params, self.cfg.optim.ema_decay, step)
        count_K = jnp.maximum(sums["count"], 1.0)
        metrics = {
            "loss": loss,
            "loss_cb": sums["ce"] / count_K,
            "acc_cb": sums["correct"] / count_K,
            "acc": jnp.sum(sums["correct"]) / norm["count"],
            "z_loss": jnp.sum(sums["zsq"]) / norm["count"],
            "align_loss": sums["align"] / norm["align"] if "align" in sums else jnp.nan,
            "length_loss": sums["length"] / norm["length"] if "length" in sums else jnp.nan,
            **{
                f"{k}_loss": _per_phone(sums[k], n_phones[k]) if k in sums else jnp.nan
                for k in ("pron", "pron_text")
            },
            "prior_weight": prior_strength(self.cfg, step),
            "grad_norm": grad_norm,
            "lr": lr,
            "finite": finite,
            "skipped": new_state["skipped"],
            "tokens": jnp.sum(batch["lengths"] * batch["valid"]) * self.cfg.model.n_codebooks,
        }
        return new_state, metrics


class EvalStep:
    """`sums = eval_step(params, batch)`, no dropout, no training aid: per-codebook
    ce/correct/count with the utterance's own condition, ce with another utterance's text
    ("ce_mismatched"), with another utterance's value of each other attribute NAME
    ("ce_mismatched_NAME") and with every attribute dropped ("ce_null"), the cross-attention
    `attention_sums` of every layer and head, and the first row's attention probabilities
    ("attn_row0": LxHxTxS) for pictures. A model with its own prior (`model.attention_prior`)
    is measured with it, each condition's prior spread over its own text, and its length head
    by `length_sums`; a phoneme head by `pron_sums` over "pron_labels" phonemes."""

    def __init__(
        self, cfg: Config, graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh, shardings: Any
    ):
        self.graphdef = graphdef
        self.cfg = cfg
        self.traces = 0
        self._jitted = jax.jit(
            self._eval,
            in_shardings=(shardings, batch_sharding(mesh)),
            out_shardings=replicated(mesh),
        )

    def __call__(self, params: Any, batch: dict[str, Any]) -> dict[str, jax.Array]:
        return self._jitted(params, batch)

    def _eval(self, params: Any, batch: dict[str, Any]) -> dict[str, jax.Array]:
        self.traces += 1
        model = nnx.merge(self.graphdef, params)
        inputs_BxKxS, targets_BxKxS, mask_BxKxS = decoder_io(batch, model.pattern)
        cond, valid = batch["cond"], batch["valid"]

        def forward(c: conditioning.Cond, **kw: Any) -> Forward:
            bias = own_prior_bias(model, c, mask_BxKxS)
            out = model.forward(c, inputs_BxKxS, attn_bias_BxTxS=bias, **kw)
            if bias is None or out.attn_LxBxHxTxS is None:
                return out
            # The attention measured and pictured is the one the model uses: with its prior.
            return out._replace(attn_LxBxHxTxS=out.attn_LxBxHxTxS + bias[None, :, None])

        logits, attn, text_BxSxD = forward(cond, with_attention=True)
        sums = {k: v for k, v in ce_sums(logits, targets_BxKxS, mask_BxKxS).items() if k != "zsq"}
        others = [
            ("mismatched", conditioning.mismatched(cond, valid)),
            ("null", conditioning.drop(cond, jnp.ones_like(valid))),
        ]
        for a, _ in conditioning.attributes(self.cfg.model):
            others.append((f"mismatched_{a.name}", conditioning.mismatched(cond, valid, a.name)))
        for name, other in others:
            sums[f"ce_{name}"] = ce_sums(forward(other)[0], targets_BxKxS, mask_BxKxS)["ce"]
        if self.cfg.model.attention_prior is not None:
            sums.update(length_sums(model, batch, text_BxSxD))
        if self.cfg.model.pron_head:  # does the phoneme head hold on text it never trained on?
            sums["pron"] = pron_sums(model, text_BxSxD, cond.text_mask_BxS, batch)
            sums["pron_labels"] = pron_labels(batch)
        steps_BxT = mask_BxKxS.any(axis=1) & valid[:, None]
        sums["attention"] = attention_sums(attn, steps_BxT, cond.text_mask_BxS)
        sums["attn_row0"] = jax.nn.softmax(attn[:, 0], axis=-1)
        return sums
