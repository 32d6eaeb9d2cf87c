"""bench/fit_gap.py: a model that memorized its training utterances scores them better than
held-out ones, from its validation split or from a store of its own; each utterance counts
once whatever the run's speaker balance; a store the model cannot read, a shipped model without
a store and a bad batch count are one line each."""

import contextlib
import io
import json
import sys
from pathlib import Path

import jax
import pytest
from flax import nnx
from synthetic import (
    make_store,
    trainer_config,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from codec_bridge.format import CodeStore
from jtts import shipped
from jtts.trained_run import load_run
from jtts.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fit_gap import fit_gap, main  # noqa: E402

# Random codes of 16 symbols: nothing generalizes, so whatever the training split scores below
# the held-out one (about ln 16 = 2.77 nats a code) is memorized.
MEMORIZE = (
    "model.codebook_size=16",
    "align.input_dropout=0.0",
    "data.val_fraction=0.3",
    "train.steps=80",
    "optim.lr=0.01",
    "eval.every=80",
    "eval.num_samples=0",
    "checkpoint.every=80",
)


@pytest.fixture(scope="module")
def memorized(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit_gap")
    store = make_store(root / "store", 24, codebook_size=16, frames=(20, 60))
    cfg = trainer_config(*MEMORIZE)
    with contextlib.redirect_stdout(io.StringIO()):
        assert train(cfg, store, root / "run", devices=jax.devices()[:1], progress=False) == 0
    return store, root / "run"


def new_utterances(path: Path) -> Path:
    """A store of other random codes that says it holds the training store's codec."""
    make_store(path, 12, codebook_size=16, frames=(20, 60), seed=1)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(
        json.dumps({**meta, "weights": {"kind": "untrained", "seed": 0}})
    )
    return path


def test_a_memorizing_model_scores_its_training_utterances_better(memorized, tmp_path):
    store, run = memorized
    out = fit_gap(run, batches=4)
    assert out["data"] == str(store)
    assert out["heldout"] == f"{store} (validation split)"
    train_side, held_side = out["training_side"], out["heldout_side"]
    assert held_side["eval/loss"] > 2.5  # held-out random codes: about the unigram's entropy
    assert train_side["codes_scored"] > held_side["codes_scored"] > 0
    assert out["gap"] > 0.3
    other = fit_gap(run, heldout=new_utterances(tmp_path / "new"), batches=4)
    assert other["training_side"] == train_side  # the same shuffled batches
    assert other["heldout_side"]["eval/loss"] > 2.5
    assert other["gap"] > 0.3


def test_each_training_utterance_counts_once_whatever_the_run_s_speaker_balance(tmp_path):
    """A run that repeats its rare speaker's utterances (speaker balance 1) is scored on each
    training utterance once: all its codes and EOS, per codebook, and no more."""
    speakers = ["alice"] * 18 + ["bob"] * 6
    store = make_store(tmp_path / "store", 24, codebook_size=16, frames=(20, 60), speakers=speakers)
    cfg = trainer_config(
        *MEMORIZE, "train.steps=2", "model.conditions=[{name: speaker}]", "data.speaker_balance=1.0"
    )
    with contextlib.redirect_stdout(io.StringIO()):
        assert train(cfg, store, tmp_path / "run", devices=jax.devices()[:1], progress=False) == 0
    out = fit_gap(tmp_path / "run", batches=1000)  # every batch of each side
    codes = CodeStore.open(store)
    for side, split in (("training_side", "train"), ("heldout_side", "val")):
        frames = codes.lengths[codes.split_indices(split, 0.3)]
        assert out[side]["codes_scored"] == cfg.model.n_codebooks * int((frames + 1).sum())


def test_the_command_prints_json_and_bad_input_is_one_line(memorized, tmp_path, capsys):
    store, run = memorized
    assert main(["--workdir", str(run), "--data", str(store), "--batches", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 80

    def error(*argv: str) -> str:
        assert main(["--workdir", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        return err

    assert error(str(run), "--batches", "0").endswith("--batches 0: must be at least 1\n")
    assert error(str(run), "--data", str(tmp_path / "gone")).endswith("gone: no such directory\n")
    (tmp_path / "empty").mkdir()
    assert "meta.json" in error(str(run), "--heldout", str(tmp_path / "empty"))
    src = load_run(run)
    folder = tmp_path / "shipped"  # a model shipped with another codec than the store's
    meta = {**src.store_meta, "weights": {"kind": "pretrained"}}
    weights = nnx.to_pure_dict(nnx.state(src.model, nnx.Param))
    shipped.write(folder, src.cfg, weights, src.step, meta, {"run": str(run)})
    assert "names no code store" in error(str(folder))
    assert "codes of another codec" in error(str(folder), "--data", str(store))
