"""bench/fit_gap.py: a model that memorized its training utterances scores them better than the
held-out ones; a store the run cannot read is one line."""

import contextlib
import io
import json
import shutil
import sys
from pathlib import Path

import jax
import pytest
from synthetic import (
    make_store,
    trainer_config,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from jtts.trainer import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.fit_gap import fit_gap, main  # noqa: E402

# Random codes of 16 symbols: nothing generalizes, so whatever the training split scores below
# the held-out split (about ln 16 = 2.77 nats a code) is memorized.
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


def test_a_memorizing_model_scores_its_training_utterances_better(memorized):
    store, run = memorized
    out = fit_gap(run, batches=4)
    assert out["data"] == str(store)
    assert out["train"]["utterances"] + out["val"]["utterances"] == 24
    assert out["val"]["eval/loss"] > 2.5  # held-out random codes: about the unigram's entropy
    assert out["gap"] == pytest.approx(out["val"]["eval/loss"] - out["train"]["eval/loss"])
    assert out["gap"] > 0.3


def test_the_command_prints_json_and_a_missing_store_is_one_line(memorized, tmp_path, capsys):
    store, run = memorized
    assert main(["--workdir", str(run), "--data", str(store), "--batches", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 80
    assert main(["--workdir", str(run), "--data", str(tmp_path / "gone")]) == 2
    assert capsys.readouterr().err == f"fit_gap: --data {tmp_path / 'gone'}: no such directory\n"
    moved = tmp_path / "run"  # a run whose store is elsewhere
    shutil.copytree(run, moved)
    info = json.loads((moved / "store.json").read_text())
    (moved / "store.json").write_text(json.dumps({**info, "store_dir": str(tmp_path / "x")}))
    assert main(["--workdir", str(moved)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("is not here; pass --data STORE\n")
