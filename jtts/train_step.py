"""The jitted training and evaluation steps, the optimizer and the loss.

The model is split once (`nnx.split`) into a static graphdef and a pure dict of parameters;
the step merges them inside `jax.jit`, so each batch shape is traced and compiled once and the
train state (params, optimizer state, step, rng) is a plain pytree that is donated, sharded
and checkpointed as is. Randomness comes from `fold_in(key(seed), step)`: a resumed run draws
exactly the keys an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import nnx
from jax import numpy as jnp

from jtts import conditioning
from jtts.alignment import (
    attention_sums,
    beta_binomial_log_prior,
    forward_sum_loss,
    head_mean_log_probs,
    prior_bias,
    prior_weight,
)
from jtts.config import Config, OptimConfig
from jtts.mesh import batch_sharding, replicated
from jtts.model import build_model
from jtts.patterns import Pattern

TrainState = dict[str, Any]  # {"params", "opt_state", "step", "rng", "skipped"[, "ema"]}
NO_DECAY = (
    "text_embed",
    "code_embed",
    "null_cond",
    "table",
    "scale",
    "byte_embed",
    "pos_embed",
)  # embeddings, norm scales


def lr_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` (or constant)."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    if cfg.decay == "constant":
        return optax.linear_schedule(0.0, cfg.lr, max(warmup, 1)) if warmup else lambda _: cfg.lr
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.lr,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=cfg.lr * cfg.min_lr_ratio,
    )


def decay_mask(params: Any) -> Any:
    """True where weight decay applies: matrices that are not embeddings or norm scales."""

    def decays(path: tuple, _: Any) -> bool:
        names = {getattr(k, "key", None) for k in path}
        return not names & set(NO_DECAY)

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """Clipping + AdamW at unit learning rate; the step scales updates by `lr_schedule(step)`.

    Taking the rate from the global step (not optax's update count) keeps the schedule on
    time when non-finite steps are skipped.
    """
    adamw = optax.adamw(
        learning_rate=1.0,
        b1=cfg.b1,
        b2=cfg.b2,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        mask=decay_mask,
    )
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw) if cfg.clip_norm else adamw


def abstract_model(cfg: Config) -> tuple[nnx.GraphDef, Any]:
    """(graphdef, params as a pure dict of ShapeDtypeStruct) without allocating anything."""
    model = nnx.eval_shape(lambda: build_model(cfg.model, nnx.Rngs(cfg.train.seed)))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise TypeError(f"model has non-parameter state the trainer does not handle: {rest}")
    return graphdef, nnx.to_pure_dict(params)


def init_state(cfg: Config, tx: optax.GradientTransformation, shardings: Any) -> TrainState:
    """Fresh train state, created directly in its sharded layout (no full host copy)."""

    def init() -> TrainState:
        model = build_model(cfg.model, nnx.Rngs(cfg.train.seed))
        params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
        state = {
            "params": params,
            "opt_state": tx.init(params),
            "step": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(jax.random.key(cfg.train.seed)),
            "skipped": jnp.zeros((), jnp.int32),
        }
        if cfg.optim.ema_decay is not None:
            state["ema"] = params
        return state

    return jax.jit(init, out_shardings=shardings)()


def abstract_state(cfg: Config, tx: optax.GradientTransformation) -> TrainState:
    """Shapes and dtypes of the train state (for shardings and checkpoint restore)."""
    _, params = abstract_model(cfg)
    state = {
        "params": params,
        "opt_state": jax.eval_shape(tx.init, params),
        "step": jax.ShapeDtypeStruct((), jnp.int32),
        "rng": jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))),
        "skipped": jax.ShapeDtypeStruct((), jnp.int32),
    }
    if cfg.optim.ema_decay is not None:
        state["ema"] = params
    return state


def inference_params(state: TrainState) -> Any:
    """The weights evaluation, samples and inference use: the moving average when kept."""
    return state.get("ema", state["params"])


def ema_update(ema: Any, params: Any, decay: float, step: jax.Array) -> Any:
    """One step of the weights' moving average; the decay warms up as
    min(decay, (1 + step) / (10 + step)) so the first weights do not linger (TF's
    ExponentialMovingAverage with num_updates)."""
    step = step.astype(jnp.float32)
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return optax.incremental_update(params, ema, 1.0 - d)


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


def _align_layers(cfg: Config) -> list[int]:
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


def length_sums(model: nnx.Module, batch: dict[str, Any]) -> dict[str, jax.Array]:
    """The length head's squared log error and absolute relative error, summed over the rows
    whose whole utterance is in the batch ("length_rows")."""
    rows_B = (batch["valid"] & batch["has_eos"]).astype(jnp.float32)
    predicted_B = model.predicted_frames(batch["cond"])
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
    dropout, NeMo's decoder input dropout)."""
    inputs_BxKxS, targets_BxKxS, mask_BxKxS = decoder_io(batch, pattern)
    if corrupt_rng is not None and cfg is not None and cfg.align.input_dropout > 0:
        b, _, s = inputs_BxKxS.shape
        hit_BxS = jax.random.bernoulli(corrupt_rng, cfg.align.input_dropout, (b, s))
        hit_BxS &= jnp.arange(s)[None, :] > 0  # step 0 keeps its BOS
        inputs_BxKxS = jnp.where(hit_BxS[:, None, :], pattern.pad, inputs_BxKxS)
    ctc = cfg is not None and cfg.align.ctc_weight > 0
    logits_BxSxKxV, attn = model(
        batch["cond"],
        inputs_BxKxS,
        attn_bias_BxTxS=batch.get("attn_bias"),
        dropout_rng=dropout_rng,
        with_attention=ctc,
    )
    sums = ce_sums(logits_BxSxKxV, targets_BxKxS, mask_BxKxS)
    if cfg is not None and cfg.model.attention_prior is not None:
        sums["length"] = length_sums(model, batch)["length"]
    if ctc:
        cond = batch["cond"]
        sums["align"], _ = forward_sum_loss(  # its row count is known before: norm["align"]
            head_mean_log_probs(attn[jnp.asarray(_align_layers(cfg))]),
            mask_BxKxS.any(axis=1),
            cond.text_mask_BxS,
            batch["valid"] & ~cond.drop_B,
            cfg.align.blank_logprob,
        )
    return sums


def _micro_batches(batch: dict[str, Any], n: int) -> dict[str, Any]:
    """[B, ...] -> [n, B/n, ...] taking every n-th row, so each device keeps its own rows."""
    return jax.tree.map(lambda v: v.reshape(v.shape[0] // n, n, *v.shape[1:]).swapaxes(0, 1), batch)


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
        k = cfg.model.n_codebooks
        self.weights_K = jnp.asarray(cfg.optim.codebook_weights or (1.0,) * k, jnp.float32)
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
        align_rows = jnp.sum(batch["valid"] & ~batch["cond"].drop_B) * len(_align_layers(self.cfg))
        norm = {
            "ce": jnp.maximum(jnp.sum(self.weights_K * mask_sums), 1.0),
            "count": jnp.maximum(jnp.sum(mask_sums), 1.0),
            "align": jnp.maximum(align_rows.astype(jnp.float32), 1.0),
            "length": jnp.maximum(jnp.sum(batch["valid"] & batch["has_eos"]), 1).astype(
                jnp.float32
            ),
        }
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
    ("ce_mismatched_NAME") and with every attribute dropped ("ce_null"), the cross-attention `attention_sums` of every
    layer and head, and the first row's attention probabilities ("attn_row0": LxHxTxS) for
    pictures. A model with its own prior (`model.attention_prior`) is measured with it, each
    condition's prior spread over its own text, and its length head by `length_sums`."""

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

        def forward(c: conditioning.Cond, **kw: Any) -> tuple[jax.Array, jax.Array | None]:
            bias = own_prior_bias(model, c, mask_BxKxS)
            if bias is None:
                return model(c, inputs_BxKxS, **kw)
            logits, attn = model(c, inputs_BxKxS, attn_bias_BxTxS=bias, **kw)
            # The attention measured and pictured is the one the model uses: with its prior.
            return logits, None if attn is None else attn + bias[None, :, None]

        logits, attn = forward(cond, with_attention=True)
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
            sums.update(length_sums(model, batch))
        steps_BxT = mask_BxKxS.any(axis=1) & valid[:, None]
        sums["attention"] = attention_sums(attn, steps_BxT, cond.text_mask_BxS)
        sums["attn_row0"] = jax.nn.softmax(attn[:, 0], axis=-1)
        return sums
