"""More data or a larger model? A trained model's loss on the utterances it trained on beside
its loss on the held-out ones, both teacher-forced without dropout (`jtts.evaluation`).

A model that overfits scores its training utterances better than the held-out ones: more data
(or more regularization) is the lever. A model that scores both alike has not learned all its
data can teach: a larger model (or another recipe) is. The training loss the trainer logs
cannot tell: it is measured with the decoder's input dropout on.

Both splits are sampled alike: `--batches` shuffled batches of each (the run's seed), each
training utterance once (the speaker balance's repeats would weigh the splits' voices
differently). `--data` is the run's store by default; a store of one voice, extracted with the
same codec and ids, compares that voice alone (the split is a hash of each id). Prints one
JSON object: each split's `eval/` metrics and `gap` (held-out minus training loss, nats/code).

    python bench/fit_gap.py --workdir RUN [--data STORE] [--batches 40]
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

from codec_bridge.format import CodeStore  # noqa: E402
from jtts import conditioning  # noqa: E402
from jtts.data import Corpus  # noqa: E402
from jtts.evaluation import eval_metrics, eval_sums  # noqa: E402
from jtts.mesh import make_mesh, state_shardings  # noqa: E402
from jtts.metrics import unigram_entropy  # noqa: E402
from jtts.optim import abstract_model  # noqa: E402
from jtts.train_step import EvalStep  # noqa: E402
from jtts.trained_run import UsageError, load_run  # noqa: E402
from jtts.trainer import SetupError, check_store  # noqa: E402

SPLITS = ("train", "val")


def fit_gap(workdir: str | Path, data: str | Path | None = None, batches: int = 40) -> dict:
    """Each split's `eval/` metrics over `batches` shuffled batches, and the loss gap."""
    run = load_run(workdir)
    if data is not None and not Path(data).is_dir():
        raise UsageError(f"--data {data}: no such directory")
    store_dir = data or run.store_meta.get("store_dir")
    if not store_dir or not Path(store_dir).is_dir():
        raise UsageError(f"{workdir}: its code store {store_dir} is not here; pass --data STORE")
    store = CodeStore.open(store_dir)
    cfg = dataclasses.replace(run.cfg, data=dataclasses.replace(run.cfg.data, speaker_balance=0.0))
    try:
        check_store(store.meta, cfg.model)
        conditioning.resolve(cfg.model, store.records())  # the store's names are the model's
        mesh = make_mesh(cfg.train.mesh)
        corpus = Corpus(store, cfg, row_multiple=mesh.devices.size * cfg.optim.grad_accum)
    except (SetupError, ValueError) as e:
        raise UsageError(f"{store_dir}: {e}") from None
    if "val" not in corpus.splits or not len(corpus.splits["val"]):
        raise UsageError(f"{store_dir}: no held-out utterances (data.val_fraction is 0)")
    graphdef, _ = abstract_model(cfg)
    params = nnx.to_pure_dict(nnx.state(run.model, nnx.Param))
    shardings = state_shardings(params, mesh)
    params = jax.device_put(params, shardings)
    step = EvalStep(cfg, graphdef, mesh, shardings)
    weights_K = np.asarray(cfg.optim.codebook_weights or (1.0,) * cfg.model.n_codebooks)
    unigram_K = unigram_entropy(corpus.code_counts("train"))
    out: dict[str, Any] = {"workdir": str(workdir), "step": run.step, "data": str(store_dir)}
    for split in SPLITS:
        sums, _ = eval_sums(step, params, corpus, mesh, batches, split=split, shuffle=True)
        values = eval_metrics(sums, weights_K, unigram_K, cfg.model, 0.0)
        values.pop("eval/elapsed_s")
        out[split] = {"utterances": int(len(corpus.splits[split])), **values}
    out["gap"] = out["val"]["eval/loss"] - out["train"]["eval/loss"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="training run or shipped model")
    p.add_argument("--data", help="code store (default: the one the run trained on)")
    p.add_argument("--batches", type=int, default=40, help="shuffled batches per split")
    a = p.parse_args(argv)
    try:
        print(json.dumps(fit_gap(a.workdir, a.data, a.batches), indent=2))
    except UsageError as e:
        print(f"fit_gap: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
