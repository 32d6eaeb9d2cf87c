"""Evaluation: `EvalStep` over batches of a split (the validation one when training), reduced to
the logged `eval/` metrics.

The step returns sums (per codebook, per attention head), so batches add up on the host and
are divided once here: the loss and accuracy per codebook, the unigram baseline, and the gains
that say whether the model reads its condition (the loss with another utterance's text, or
another value of attribute NAME, or nothing, minus the loss with its own: `eval/text_gain`,
`eval/NAME_gain`, `eval/null_gain`).
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import numpy as np

from jtts import conditioning
from jtts.alignment import best_head
from jtts.config import ModelConfig
from jtts.data import Corpus, Loader
from jtts.mesh import batch_sharding
from jtts.metrics import flatten
from jtts.train_step import EvalStep


def eval_sums(
    eval_step: EvalStep,
    params: Any,
    corpus: Corpus,
    mesh: jax.sharding.Mesh,
    batches: int,
    *,
    split: str = "val",
    shuffle: bool = False,
) -> tuple[dict[str, Any], np.ndarray]:
    """`eval_step`'s sums over the first `batches` batches of `split` (host arrays), and the
    first batch's attention probabilities of its first row (`attn_row0`, LxHxTxS). Unshuffled,
    the first batches are the shortest utterances; shuffled (the corpus's seed), any
    `batches` are a sample of the whole split."""
    sums, row0 = None, None
    sharding = batch_sharding(mesh)
    with Loader(corpus, split, sharding, shuffle=shuffle, epochs=1, prefetch=1) as loader:
        for batch in itertools.islice(loader, batches):
            out = dict(eval_step(params, batch.arrays))
            first = out.pop("attn_row0")
            row0 = first if row0 is None else row0
            sums = out if sums is None else jax.tree.map(np.add, sums, out)
    return jax.tree.map(np.asarray, jax.device_get(sums)), np.asarray(jax.device_get(row0))


def eval_metrics(
    s: dict[str, Any],
    weights_K: np.ndarray,
    unigram_K: np.ndarray,
    model: ModelConfig,
    elapsed_s: float,
) -> dict[str, float]:
    """The `eval/` metrics of `eval_sums`' sums: losses weighted by the codebook weights,
    the unigram baseline `unigram_K`, the condition gains (nats per code), the best head's
    attention measures (`best_head`), for a model with a length head its mean
    |predicted / true - 1| and for one with a phoneme head its loss per phoneme (each left
    out when validation holds no rows or phonemes to measure)."""
    count_K = np.maximum(s["count"], 1.0)
    loss = float((weights_K * s["ce"]).sum() / max((weights_K * s["count"]).sum(), 1))
    gain_K = (s["ce_mismatched"] - s["ce"]) / count_K
    head = best_head(s["attention"])
    values = {
        "eval/loss": loss,
        "eval/acc": float(s["correct"].sum() / max(s["count"].sum(), 1)),
        **flatten("eval", {"loss_cb": s["ce"] / count_K, "acc_cb": s["correct"] / count_K}),
        "eval/unigram": float((weights_K * unigram_K).sum() / weights_K.sum()),
        **flatten("eval", {"unigram_cb": unigram_K}),
        "eval/text_gain": float(gain_K.mean()),
        **flatten("eval", {"text_gain_cb": gain_K}),
        "eval/null_gain": float(((s["ce_null"] - s["ce"]) / count_K).mean()),
        **{
            f"eval/{a.name}_gain": float(
                ((s[f"ce_mismatched_{a.name}"] - s["ce"]) / count_K).mean()
            )
            for a, _ in conditioning.attributes(model)
        },
        **{f"eval/attn_{k}": v for k, v in head.items()},
        "eval/elapsed_s": elapsed_s,
    }
    if s.get("length_rows", 0) > 0:  # mean |predicted / true - 1| of the length head
        values["eval/length_error"] = float(s["length_abs_rel"] / s["length_rows"])
    if s.get("pron_labels", 0) > 0:  # the phoneme head's CTC loss per phoneme, if any
        values["eval/pron_loss"] = float(s["pron"] / s["pron_labels"])
    return values
