"""What the trainer tells: console lines, the logged `train/` values, attention pictures and
generated samples.

Kept apart from the loop so that the loop reads as control flow; every file it writes is at
a path `jtts.rundir.RunDir` names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from flax import nnx

from codec_bridge.format import CodeStore, file_stem, save_codes
from jtts import conditioning, decode
from jtts.config import Config
from jtts.data import Corpus
from jtts.mesh import describe
from jtts.metrics import MetricsLogger, flatten, mfu, peak_flops
from jtts.model import build_model, count_params
from jtts.rundir import RunDir
from jtts.sampling import Sampling

if TYPE_CHECKING:
    from jtts.pron_text import PronText

TRAIN_KEYS = ("loss", "acc", "loss_cb", "acc_cb", "grad_norm", "lr", "prior_weight")


def count_params_of(cfg: Config) -> int:
    return count_params(nnx.eval_shape(lambda: build_model(cfg.model, nnx.Rngs(0))))


def startup_lines(
    cfg: Config,
    mesh: jax.sharding.Mesh,
    corpus: Corpus,
    store: CodeStore,
    start: int,
    data_state: Any,
    pron_text: PronText | None = None,
) -> list[str]:
    """What a run says before its first step: model size, mesh, MFU reference, data kept and
    dropped per split (and text-only lines), attributes read, batch shapes and where it
    resumed."""
    lines = [f"jtts: {cfg.name}, {count_params_of(cfg):,} parameters", f"jtts: {describe(mesh)}"]
    peak = peak_flops(mesh.devices.flat[0])
    lines.append(
        f"jtts: MFU against {peak:.3g} bf16 FLOP/s per device"
        if peak
        else "jtts: MFU not reported (train/mfu null): no peak FLOP/s known for this device"
    )
    s = corpus.summary()
    lines.append(f"jtts: data {store.root} ({s['utterances']} utterances)")
    for split, c in s["splits"].items():
        lines.append(
            f"jtts:   {split}: {c['kept']} of {c['utterances']} used, {c['cropped']} "
            f"cropped to {cfg.data.max_frames} frames, "
            f"{c['dropped_too_many_frames']} dropped (too many frames), "
            f"{c['dropped_text_too_long']} dropped (text > {cfg.model.max_text_len} {cfg.model.text_units})"
            + (
                f", {c['phonemes_unfit']} without phoneme targets (more than the text's bytes)"
                if "phonemes_unfit" in c
                else ""
            )
        )
    if pron_text is not None:
        c, m = pron_text.counts, cfg.model
        fit = ", ".join(f"{n} fit {s}t" for s, n in pron_text.fit.items())
        lines.append(
            f"jtts:   text only ({pron_text.path}): {c['kept']} of {c['lines']} lines used, "
            f"{pron_text.rows} a step for the phoneme head, as long as the batch's text ({fit}), "
            f"{c['too_long']} dropped (text > {pron_text.longest} {m.text_units}), "
            f"{c['unfit']} dropped (more phonemes than the text's bytes), "
            f"{c['held_out']} dropped (a validation transcript)"
        )
    if s["speaker_repeats"]:
        each = ", ".join(f"{k} x{v}" for k, v in s["speaker_repeats"].items())
        lines.append(f"jtts:   speaker balance {cfg.data.speaker_balance:g}: per epoch {each}")
    for a, c in conditioning.attributes(cfg.model):
        lines.append(
            f"jtts: reads the {a.name} too: {len(c.values)} values, dropout {c.drop_prob:g}"
        )
    shapes = ", ".join(f"{b.rows}x{b.frames}f/{b.text_len}t" for b in corpus.buckets)
    lines.append(f"jtts: {len(corpus.buckets)} batch shapes (rows x frames / text): {shapes}")
    if start:
        lines.append(f"jtts: resumed from step {start} (data position {data_state})")
    return lines


def train_values(
    m: dict[str, Any],
    interval: dict[str, float],
    devices: list[jax.Device],
    elapsed_s: float,
) -> dict[str, float | None]:
    """The logged `train/` values of a step's fetched metrics `m` (`TrainStep`), with the
    throughput of the `interval` since the last log (its tokens, time, flops and steps)."""
    iv = interval
    values = flatten("train", {k: m[k] for k in TRAIN_KEYS})
    values["train/z_loss"] = float(m["z_loss"])
    for key in ("align_loss", "length_loss", "pron_loss", "pron_text_loss"):
        if np.isfinite(m[key]):
            values[f"train/{key}"] = float(m[key])
    values["train/skipped"] = int(m["skipped"])
    values["train/tokens_per_s"] = iv["tokens"] / iv["time"] if iv["time"] else None
    values["train/flops_per_s"] = iv["flops"] / iv["time"] if iv["time"] else None
    values["train/mfu"] = mfu(iv["flops"], iv["time"], devices)
    values["train/step_time_s"] = iv["time"] / iv["steps"] if iv["steps"] else None
    values["train/elapsed_s"] = elapsed_s
    return values


def eval_lines(step: int, values: dict[str, float], n_codebooks: int) -> list[str]:
    """The console summary of an evaluation's `values` (`jtts.evaluation.eval_metrics`)."""
    cb = " ".join(
        f"{values[f'eval/loss_cb{k}']:.3f}/{values[f'eval/unigram_cb{k}']:.3f}"
        for k in range(n_codebooks)
    )
    return [
        f"jtts: step {step} eval loss {values['eval/loss']:.4f} "
        f"(unigram {values['eval/unigram']:.4f}); per codebook loss/unigram {cb}",
        f"jtts: step {step} text gain {values['eval/text_gain']:.3f} nats/code "
        f"(cb0 {values['eval/text_gain_cb0']:.3f}); attention focus "
        f"{values['eval/attn_focus']:.2f}, monotonicity {values['eval/attn_monotonicity']:.2f}, "
        f"coverage {values['eval/attn_coverage']:.2f} "
        f"(layer {values['eval/attn_layer']} head {values['eval/attn_head']})",
    ]


def save_attention(run: RunDir, log: MetricsLogger, step: int, probs_TxS: np.ndarray) -> None:
    """The first validation utterance's attention (best head) as `RunDir.attention`
    (text tokens x steps, float16) and a TensorBoard image."""
    image_SxT = probs_TxS.T.astype(np.float32)
    out = run.attention(step)
    out.parent.mkdir(exist_ok=True)
    np.save(out, image_SxT.astype(np.float16))
    log.image("eval/attention", image_SxT / max(float(image_SxT.max()), 1e-9), step)


def store_info(store: CodeStore) -> dict[str, Any]:
    """The training store's codec meta and absolute path, for decoding generated codes."""
    meta = {k: v for k, v in store.meta.items() if k != "shards"}
    return {**meta, "store_dir": str(store.root.resolve())}


def write_samples(
    model: nnx.Module, corpus: Corpus, store: CodeStore, cfg: Config, run: RunDir, step: int
) -> None:
    """Samples `eval.num_samples` validation texts with jtts.decode into
    `RunDir.samples`: ID.npy (+ ID.json: store meta, store_dir, text, step)."""
    rows = corpus.splits["val"][: cfg.eval.num_samples]
    generation = decode.generate(
        model,
        [corpus.tokens[i].tolist() for i in rows],
        Sampling.of(cfg.sample, seed=cfg.train.seed + step),
        max_frames=int(cfg.eval.sample_max_seconds * float(store.meta["frame_rate"])),
        categories={name: ids[rows] for name, ids in corpus.categories.items()},
    )
    out = run.samples(step)
    out.mkdir(parents=True, exist_ok=True)
    info = store_info(store)
    for i, codes_KxT in zip(rows, generation.codes, strict=True):
        utt = store[int(i)]
        sidecar = {**info, "id": utt.id, "text": utt.text, "step": step}
        save_codes(out / f"{file_stem(utt.id)}.npy", codes_KxT, sidecar)  # ids may hold "/"
