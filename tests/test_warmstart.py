"""`train.init_from`: a new run starts from a trained run's or a shipped model's weights, a new
speaker table starts fresh, and a mismatched or missing source is one line."""

import contextlib
import io
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from synthetic import (
    make_two_speaker_store,
    trainer_config,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from jtts import shipped, warmstart
from jtts.model import params_by_path
from jtts.rundir import RunDir
from jtts.train import main
from jtts.trained_run import load_run
from jtts.trainer import SetupError, Trainer, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SPEAKER = "model.conditions=[{name: speaker}]"


def one_device():
    return jax.devices()[:1]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny run without speakers, trained 8 steps on a two-speaker store."""
    root = tmp_path_factory.mktemp("warm")
    store = make_two_speaker_store(root / "store", texts=6)
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            train(trainer_config(), store, root / "run", devices=one_device(), progress=False) == 0
        )
    return store, root / "run"


def flat_numpy(tree):
    return {k: np.asarray(v) for k, v in params_by_path(tree).items()}


def test_a_speaker_table_joins_the_weights_of_a_run_and_of_a_shipped_model(source, tmp_path):
    """Every parameter the source has starts at its inference weights (a shipped model's are
    float16), in the training weights and their average alike; the speaker table the source
    lacks starts as a fresh run's does; the optimizer starts at step 0."""
    store, run = source
    src = load_run(run)
    folder = tmp_path / "shipped"
    meta = {**src.store_meta, "weights": {"kind": "pretrained"}}
    weights = nnx.to_pure_dict(nnx.state(src.model, nnx.Param))
    shipped.write(folder, src.cfg, weights, src.step, meta, {"run": str(run)})
    fresh = Trainer(trainer_config(SPEAKER), store, tmp_path / "fresh", devices=one_device())
    fresh_params = flat_numpy(fresh.state["params"])
    fresh.ckpt.close()
    for where in (run, folder):
        want = flat_numpy(nnx.to_pure_dict(nnx.state(load_run(where).model, nnx.Param)))
        cfg = trainer_config(SPEAKER, f"train.init_from={where}", "optim.ema_decay=0.9")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            warm = Trainer(cfg, store, tmp_path / f"warm-{where.name}", devices=one_device())
        warm.ckpt.close()
        assert warm.start == 0 and int(warm.state["step"]) == 0
        new = sorted(set(fresh_params) - set(want))
        assert new and all("speaker" in k or "conditions" in k for k in new)
        assert f"weights from {where} (step 8); fresh: {', '.join(new)}" in out.getvalue()
        assert "ema" in warm.state
        for key in ("params", "ema"):
            got = flat_numpy(warm.state[key])
            for name, value in got.items():
                expect = want[name] if name in want else fresh_params[name]
                np.testing.assert_array_equal(value, expect, err_msg=f"{key} {name}")
        moments = [np.abs(np.asarray(x)).max() for x in jax.tree.leaves(warm.state["opt_state"])]
        assert max(moments) == 0.0
        # The source is not a fresh model, so the comparison above tells them apart.
        assert sum(not np.array_equal(want[k], fresh_params[k]) for k in want) > len(want) // 2


def test_a_warm_run_trains_and_resumes_without_its_source(source, tmp_path):
    """The source is read once, at step 0: the run resumes with the source gone."""
    store, run = source
    copy = tmp_path / "source"
    shutil.copytree(run, copy)
    cfg = trainer_config(SPEAKER, f"train.init_from={copy}")
    with contextlib.redirect_stdout(io.StringIO()):
        assert train(cfg, store, tmp_path / "warm", devices=one_device(), progress=False) == 0
        shutil.rmtree(copy)
        longer = trainer_config(SPEAKER, f"train.init_from={copy}", "train.steps=12")
        assert train(longer, store, tmp_path / "warm", devices=one_device(), progress=False) == 0
    assert max(RunDir(tmp_path / "warm").saved_steps()) == 12


def test_a_source_of_another_shape_or_none_is_one_line(source, tmp_path, capsys):
    store, run = source
    cfg = trainer_config("model.mlp_dim=96", f"train.init_from={run}")
    with pytest.raises(SetupError, match=r"parameter \S+ has shape \(\d+, \d+\) there and"):
        Trainer(cfg, store, tmp_path / "other", devices=one_device())
    missing = tmp_path / "nowhere"
    argv = ["--config", str(CONFIGS / "tiny.yaml"), "--data", str(store), "--workdir"]
    argv += [str(tmp_path / "run"), "--set", f"train.init_from={missing}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jtts.train: error: train.init_from") and str(missing) in err
    assert "\n" not in err


def test_a_speaker_table_grows_row_by_row_by_name(source, tmp_path):
    """A run with more voices than its source keeps each shared voice's row (wherever the new
    table puts it) and starts the new voice's row fresh; the log names the new row."""
    store, _ = source
    with contextlib.redirect_stdout(io.StringIO()):
        run = train(
            trainer_config(SPEAKER), store, tmp_path / "two", devices=one_device(), progress=False
        )
        assert run == 0
    src = load_run(tmp_path / "two")
    old = src.cfg.model.conditions[0].values
    want = flat_numpy(nnx.to_pure_dict(nnx.state(src.model, nnx.Param)))[
        "conditioner/speaker/table"
    ]
    values = [old[1], "carol", old[0]]
    grown = f"model.conditions=[{{name: speaker, values: [{', '.join(values)}]}}]"
    fresh = Trainer(trainer_config(grown), store, tmp_path / "fresh", devices=one_device())
    fresh_table = flat_numpy(fresh.state["params"])["conditioner/speaker/table"]
    fresh.ckpt.close()
    out = io.StringIO()
    cfg = trainer_config(grown, f"train.init_from={tmp_path / 'two'}", "optim.ema_decay=0.9")
    with contextlib.redirect_stdout(out):
        warm = Trainer(cfg, store, tmp_path / "warm", devices=one_device())
    warm.ckpt.close()
    assert "fresh: conditioner/speaker/table rows carol" in out.getvalue()
    for key in ("params", "ema"):
        table = flat_numpy(warm.state[key])["conditioner/speaker/table"]
        np.testing.assert_array_equal(table[0], want[1])
        np.testing.assert_array_equal(table[2], want[0])
        np.testing.assert_array_equal(table[1], fresh_table[1])
    assert not np.array_equal(want[0], fresh_table[2])
    assert not np.array_equal(want[1], fresh_table[0])


def test_table_rows_by_name_leave_another_width_to_the_shape_check():
    """Rows are matched by name in the source's values; a voice the new table lacks is named
    for the log; a table of another width is not matched (the shape check names it)."""
    path = "conditioner/speaker/table"
    table = np.arange(6, dtype=np.float16).reshape(3, 2)
    src = warmstart.Source({path: table}, 5, {path: ("a", "b", "c")})
    fresh = {path: np.zeros((2, 2), np.float32)}
    by_row, new, gone = warmstart._by_name(src, {path: ("c", "d")}, fresh)
    np.testing.assert_array_equal(by_row[path].index, [0])
    np.testing.assert_array_equal(by_row[path].values, table[[2]])
    assert new == [f"{path} rows d"] and gone == [f"{path} rows a, b"]
    wide = {path: np.zeros((2, 3), np.float32)}
    assert warmstart._by_name(src, {path: ("c", "d")}, wide)[0] == {}
    same = warmstart._by_name(src, {path: ("a", "b", "c")}, fresh)
    assert same == ({}, [], [])
