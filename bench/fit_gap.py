"""More data or a larger model? A trained model's loss on the utterances it trained on beside
its loss on held-out ones, both teacher-forced without dropout (`jtts.evaluation`).

A model that overfits scores its training utterances better than held-out ones: more data (or
more regularization) is the lever. A model that scores both alike has not learned all its data
can teach: a larger model (or another recipe) is. The training loss the trainer logs cannot
tell: it is measured with the decoder's input dropout on.

Held out means sentences the model never read: `--heldout STORE`, a store of them (e.g. a
speechcorpus `--split heldout` corpus) in the model's voices, each of its utterances held out.
Without it the run's own validation split is used, which holds out utterances, not sentences:
a corpus in which several voices read one text, or a run started from another run's weights,
has read many of them. Both sides are sampled alike: `--batches` shuffled batches (the run's
seed), each training utterance once (the speaker balance's repeats would weigh the voices
differently). `--data` is the run's store by default (a shipped model names none). Both stores
must hold codes of the model's codec. Prints one JSON object: each side's `eval/` metrics and
the codes scored, and `gap` (held-out minus training loss, nats/code).

    python bench/fit_gap.py --workdir RUN|MODEL [--data STORE] [--heldout STORE] [--batches 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec_bridge.format import CodeStore, StoreError, codec_settings  # noqa: E402
from jtts import conditioning  # noqa: E402
from jtts.config import Config, MeshConfig  # noqa: E402
from jtts.data import Corpus  # noqa: E402
from jtts.evaluation import eval_metrics, eval_sums  # noqa: E402
from jtts.mesh import make_mesh, state_shardings  # noqa: E402
from jtts.metrics import unigram_entropy  # noqa: E402
from jtts.train_step import EvalStep  # noqa: E402
from jtts.trained_run import UsageError, load_run  # noqa: E402


def _corpus(where: str | Path, cfg: Config, codec: dict[str, Any], rows: int) -> Corpus:
    """The corpus of the store at `where`, checked to hold codes of `codec` and names the
    model knows; a bad store is one line."""
    if not Path(where).is_dir():
        raise UsageError(f"{where}: no such directory")
    try:
        store = CodeStore.open(where)
        if (theirs := codec_settings(store.meta)) != codec:
            raise UsageError(
                f"{where}: codes of another codec ({theirs}) than the model's ({codec})"
            )
        conditioning.resolve(cfg.model, store.records())  # the store's names are the model's
        # Codes alone are scored: no phoneme targets, so no G2P (model.pron_head).
        plain = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pron_head=False))
        return Corpus(store, plain, row_multiple=rows)
    except (StoreError, ValueError) as e:
        raise UsageError(f"{where}: {e}") from None


def fit_gap(
    workdir: str | Path,
    data: str | Path | None = None,
    heldout: str | Path | None = None,
    batches: int = 40,
) -> dict:
    """The training and held-out sides' `eval/` metrics over `batches` shuffled batches each,
    and the loss gap."""
    if batches < 1:
        raise UsageError(f"--batches {batches}: must be at least 1")
    run = load_run(workdir)
    data = data or run.store_meta.get("store_dir")
    if not data:
        raise UsageError(f"{workdir} names no code store (a shipped model); pass --data STORE")
    data_cfg = dataclasses.replace(run.cfg.data, speaker_balance=0.0)
    cfg = dataclasses.replace(run.cfg, data=data_cfg)
    mesh = make_mesh(MeshConfig())
    rows = mesh.devices.size * cfg.optim.grad_accum
    codec = codec_settings(run.store_meta)
    corpus = _corpus(data, cfg, codec, rows)
    if heldout is None:
        held, held_split = corpus, "val"
        if not len(corpus.splits.get("val", ())):
            raise UsageError(
                f"{data}: no validation split (data.val_fraction is 0); pass --heldout"
            )
    else:  # every utterance of it held out
        all_held = dataclasses.replace(cfg, data=dataclasses.replace(data_cfg, val_fraction=0.0))
        held, held_split = _corpus(heldout, all_held, codec, rows), "train"
    graphdef, params = nnx.split(run.model, nnx.Param)
    params = nnx.to_pure_dict(params)
    shardings = state_shardings(params, mesh)
    params = jax.device_put(params, shardings)
    step = EvalStep(cfg, graphdef, mesh, shardings)
    weights_K = np.asarray(cfg.codebook_weights, np.float64)
    unigram_K = unigram_entropy(corpus.code_counts("train"))

    def side(c: Corpus, split: str) -> dict[str, Any]:
        sums, _ = eval_sums(step, params, c, mesh, batches, split=split, shuffle=True)
        values = eval_metrics(sums, weights_K, unigram_K, cfg.model, 0.0)
        values.pop("eval/elapsed_s")
        return {"codes_scored": int(sums["count"].sum()), **values}

    out: dict[str, Any] = {"workdir": str(workdir), "step": run.step, "data": str(data)}
    out["heldout"] = str(heldout) if heldout is not None else f"{data} (validation split)"
    out["training_side"] = side(corpus, "train")
    out["heldout_side"] = side(held, held_split)
    out["gap"] = out["heldout_side"]["eval/loss"] - out["training_side"]["eval/loss"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="training run or shipped model")
    p.add_argument("--data", help="its training store (a run's is the default)")
    p.add_argument("--heldout", help="a store of sentences it never read (default: --data's split)")
    p.add_argument("--batches", type=int, default=40, help="shuffled batches per side")
    a = p.parse_args(argv)
    try:
        print(json.dumps(fit_gap(a.workdir, a.data, a.heldout, a.batches), indent=2))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
