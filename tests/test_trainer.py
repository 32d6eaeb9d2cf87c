"""The training loop end to end: run directory contents, non-blocking metrics, resume no-op,
store/config checks, non-finite handling, learning, and two processes on localhost."""

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest
from synthetic import (
    PRON,
    TRAINER_RUN,
    make_store,
    run_processes,
    subprocess_env,
    train_command,
    trainer_config,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from codec_bridge.format import CodeStore, load_codes
from jtts.checkpoint import restore_params
from jtts.config import config_to_dict, load_config
from jtts.metrics import read_jsonl
from jtts.rundir import RunDir
from jtts.train import main
from jtts.train_step import TrainStep
from jtts.trainer import NonFiniteLossError, Trainer, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("trainer") / "store", 24, frames=(20, 90))


def one_device():
    return jax.devices()[:1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, store):
    """One tiny run, instrumented: (cfg, run_dir, console output, dispatch/fetch events)."""
    run_dir = tmp_path_factory.mktemp("run")
    events = []
    real_call, real_finish = TrainStep.__call__, Trainer._finish

    def call(self, state, batch):
        out = real_call(self, state, batch)
        events.append("dispatch")
        return out

    def finish(self, pending):
        events.append(("fetch", pending.step, events.count("dispatch")))
        return real_finish(self, pending)

    cfg = trainer_config()
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(TrainStep, "__call__", call)
        mp.setattr(Trainer, "_finish", finish)
        assert train(cfg, store, run_dir, devices=one_device(), progress=False) == 0
    return cfg, run_dir, out.getvalue(), events


def test_metrics_are_read_one_step_behind_the_dispatch(finished):
    """Step n's metrics are read after step n+1 was dispatched, except where the loop waits
    anyway (eval and checkpoint steps, every 4)."""
    events = finished[3]
    fetches = [e for e in events if e != "dispatch"]
    assert [f[1] for f in fetches] == list(range(1, 9))
    for _, step, dispatched in fetches:
        assert dispatched == (step if step % 4 == 0 else step + 1)


def test_run_directory_holds_config_metrics_checkpoints_samples_and_plots(finished, store):
    cfg, run_dir, out, _ = finished
    assert "parameters" in out and "mesh data=1 x fsdp=1" in out and "train:" in out
    assert json.loads(RunDir(run_dir).config.read_text()) == config_to_dict(cfg)
    assert json.loads(RunDir(run_dir).layout_file.read_text()) == {"layout": 1}
    records = read_jsonl(RunDir(run_dir).metrics)
    assert [r["step"] for r in records if "train/loss" in r] == list(range(1, 9))
    evals = [r for r in records if "eval/loss" in r]
    assert [r["step"] for r in evals] == [4, 8]
    for key in ("eval/loss_cb7", "eval/acc_cb0", "eval/unigram_cb0", "eval/unigram"):
        assert np.isfinite(evals[-1][key])
    assert 0 < evals[-1]["eval/unigram"] <= np.log(1025)  # plug-in estimate, few codes
    last = [r for r in records if "train/loss" in r][-1]
    assert last["train/mfu"] is None and last["train/tokens_per_s"] > 0
    steps = sorted(int(p.name) for p in RunDir(run_dir).checkpoints.iterdir() if p.name.isdigit())
    assert steps == [4, 8]
    sample = next(RunDir(run_dir).samples(8).glob("*.npy"))
    codes, meta = load_codes(sample)
    assert codes.ndim == 2 and codes.shape[0] == 8 and meta["store_dir"] == str(store)
    assert RunDir(run_dir).loss_plot.exists() and any(RunDir(run_dir).tensorboard.iterdir())
    assert restore_params(run_dir)[2] in (4, 8)


def test_rerunning_a_finished_run_resumes_and_does_nothing(finished, store, capsys):
    cfg, run_dir, _, _ = finished
    before = RunDir(run_dir).metrics.read_text()
    assert train(cfg, store, run_dir, devices=one_device(), progress=False) == 0
    assert RunDir(run_dir).metrics.read_text() == before
    assert "resumed from step 8" in capsys.readouterr().out


def test_a_run_without_a_recorded_layout_resumes_and_records_it(finished, store, capsys):
    cfg, run_dir, _, _ = finished
    RunDir(run_dir).layout_file.unlink()  # as runs written before the layout was recorded
    assert train(cfg, store, run_dir, devices=one_device(), progress=False) == 0
    assert "resumed from step 8" in capsys.readouterr().out
    assert json.loads(RunDir(run_dir).layout_file.read_text()) == {"layout": 1}


def test_cli_refuses_a_run_of_a_newer_layout_in_one_line(tmp_path, store, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    RunDir(run_dir).layout_file.write_text('{"layout": 2}')
    args = ["--config", str(CONFIGS / "tiny.yaml"), "--data", str(store), "--workdir", str(run_dir)]
    assert main([*args, "--set", *TRAINER_RUN]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"jtts.train: error: {run_dir / 'run.json'}: run directory layout 2, this jtts reads "
        "layout 1 and older; use the jtts version that wrote the run"
    )
    names = sorted(p.name for p in RunDir(run_dir).root.iterdir())
    assert names == sorted(
        [RunDir(run_dir).lock.name, RunDir(run_dir).layout_file.name]
    )  # nothing read


def test_cli_rejects_an_incompatible_checkpoint_in_one_line(finished, store, capsys):
    _, run_dir, _, _ = finished
    args = ["--config", str(CONFIGS / "tiny.yaml"), "--data", str(store), "--workdir", str(run_dir)]
    sets = [*TRAINER_RUN, "model.d_model=32", "model.mlp_dim=96", "model.dropout=0.2"]
    assert main([*args, "--set", *sets]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("jtts.train: error: ")
    assert "model.d_model=64 (checkpoint) vs 32" in err and "model.mlp_dim=128" in err
    assert "dropout" not in err


def test_store_and_config_codebooks_must_match(tmp_path, store):
    cfg = trainer_config("model.n_codebooks=4")
    with pytest.raises(ValueError) as err:
        train(cfg, store, tmp_path, devices=one_device(), progress=False)
    msg = str(err.value)
    assert "n_codebooks=8" in msg and "model.n_codebooks=4" in msg
    assert "--set model.n_codebooks=8" in msg


@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_nonfinite_step_stops_with_ids_or_is_skipped(tmp_path, store, monkeypatch, capsys, mode):
    real_call = TrainStep.__call__
    calls = []

    def call(self, state, batch):
        state, metrics = real_call(self, state, batch)
        calls.append(1)
        if len(calls) == 3:  # report step 3 as non-finite (the step guards itself; see
            metrics = {**metrics, "finite": np.bool_(False)}  # test_train_step)
        return state, metrics

    monkeypatch.setattr(TrainStep, "__call__", call)
    cfg = trainer_config(f"train.nonfinite={mode}", "eval.num_samples=0")
    if mode == "stop":
        with pytest.raises(NonFiniteLossError, match=r"step 3: ") as err:
            train(cfg, store, tmp_path, devices=one_device(), progress=False)
        named = re.findall(r"'([^']+)'", str(err.value))  # the batch's utterance ids
        assert named and set(named) <= set(CodeStore.open(store).ids)
        return
    assert train(cfg, store, tmp_path, devices=one_device(), progress=False) == 0
    assert "skipped step 3" in capsys.readouterr().out
    _, params, _ = restore_params(tmp_path, "latest")
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_cli_nonfinite_stop_is_one_line(tmp_path, store):
    sets = ["data.val_fraction=0", "optim.lr=1e30", "optim.warmup_steps=0", "optim.clip_norm=0"]
    cmd = train_command(CONFIGS / "tiny.yaml", store, tmp_path, *TRAINER_RUN, *sets)
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert last.startswith("jtts.train: error: non-finite step ") and "batch utterances" in last


def test_tiny_overfits_four_utterances(tmp_path):
    """Proof of learning: structured codes of 4 utterances to near-zero loss."""
    store = make_store(tmp_path / "store", 4, frames=(40, 60), structured=True, shards=1)
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [
            "data.val_fraction=0",
            "data.bucket_sizes=[64]",
            "data.batch_frames=256",
            "train.steps=60",
            "optim.lr=1e-2",
            "optim.warmup_steps=5",
            "model.cond_drop_prob=0",
            "checkpoint.every=1000",
            "log.every=10",
            "align.input_dropout=0",  # overfit: nothing hides the decoder's own past
        ],
    )
    assert train(cfg, store, tmp_path / "run", devices=one_device(), progress=False) == 0
    losses = [r["train/loss"] for r in read_jsonl(RunDir(tmp_path / "run").metrics)]
    assert losses[0] > 3 and losses[-1] < 0.05


@pytest.mark.slow
def test_two_processes_on_localhost_train_like_one(tmp_path, store):
    """2 processes x 2 CPU devices, mesh data=2 x fsdp=2: each process loads its half of every
    batch; both report the same losses, equal to one process with 4 devices."""
    sets = ("train.steps=4", "eval.num_samples=0", "train.mesh.data=2", "train.mesh.fsdp=2")
    multi = train_command(CONFIGS / "tiny.yaml", store, tmp_path / "multi", *TRAINER_RUN, *sets)
    procs = run_processes(multi, devices=2)
    outs = [p.stdout for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    finals = [next(x for x in o.splitlines() if "stopped at step" in x) for o in outs]
    assert "process 0/2" in finals[0] and "process 1/2" in finals[1]
    assert finals[0].split("train/loss")[1] == finals[1].split("train/loss")[1]

    cfg = trainer_config(*sets)
    assert train(cfg, store, tmp_path / "single", devices=jax.devices()[:4], progress=False) == 0
    multi = read_jsonl(RunDir(tmp_path / "multi").metrics)
    single = read_jsonl(RunDir(tmp_path / "single").metrics)
    for key in ("train/loss", "eval/loss"):
        a = [r[key] for r in multi if key in r]
        b = [r[key] for r in single if key in r]
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_a_shard_changed_in_place_is_refused_at_start(tmp_path, store, capsys):
    changed = tmp_path / "store"
    shutil.copytree(store, changed)
    codes = next((changed / "shards").iterdir()) / "codes.npy"
    data = bytearray(codes.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only a checksum notices
    codes.write_bytes(bytes(data))
    args = ["--config", str(CONFIGS / "tiny.yaml"), "--data", str(changed)]
    assert main([*args, "--workdir", str(tmp_path / "run"), "--set", *TRAINER_RUN]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"jtts.train: error: {codes}: checksum mismatch (file is corrupted)")
    assert "python -m codec_bridge verify lists them all" in err


def test_a_phoneme_head_reads_text_only_rows_and_reports_them(tmp_path, store, capsys):
    """`data.pron_text`: the run says what it kept of the file, trains the phoneme head on
    them beside its batches (train/pron_text_loss, apart from the recordings' train/pron_loss)
    and measures the head on held-out batches."""
    pytest.importorskip("hibari.g2p")
    lines = tmp_path / "lines.txt"
    lines.write_text("The cat sat.\nDogs bark at night.\nX\n", encoding="utf-8")
    text = (f"data.pron_text={lines}", "data.pron_rows=3", "model.max_text_len=512")
    cfg = trainer_config(*PRON, *text, "eval.num_samples=0", "log.tensorboard=false")
    run_dir = tmp_path / "run"
    assert train(cfg, store, run_dir, devices=one_device(), progress=False) == 0
    out = capsys.readouterr().out
    used = f"text only ({lines}): 2 of 3 lines used, 3 a step for the phoneme head, as long as"
    assert used in out
    assert "1 dropped (more phonemes than the text's bytes)" in out
    records = read_jsonl(RunDir(run_dir).metrics)
    for key in ("train/pron_loss", "train/pron_text_loss"):
        assert all(np.isfinite(r[key]) for r in records if "train/loss" in r), key
    assert [np.isfinite(r["eval/pron_loss"]) for r in records if "eval/loss" in r] == [True] * 2
