"""Checkpoints: exact round trip, retention, params-only restore, config clashes, and real
preemption: SIGKILL then resume is bit-identical to an uninterrupted run; SIGTERM saves."""

import asyncio
import gc
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import sandbox
from synthetic import (
    TRAINER_SHAPE,
    UNIT_OVERRIDES,
    UNIT_SHAPE,
    device_batch,
    make_store,
    random_batch,
    run_processes,
    subprocess_env,
    train_command,
    train_setup,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from jtts.checkpoint import (
    Checkpointer,
    CheckpointError,
    DamagedCheckpointWarning,
    load_model,
    restore_params,
)
from jtts.config import apply_overrides, load_config
from jtts.metrics import read_jsonl
from jtts.rundir import RunDir
from jtts.train import main
from jtts.trainer import PREEMPTED_EXIT_CODE, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = CONFIGS / "tiny.yaml"


def tiny(*overrides):
    return apply_overrides(load_config(TINY), [*UNIT_OVERRIDES, "checkpoint.keep=2", *overrides])


@pytest.fixture(scope="module")
def trained():
    """A tiny train state after one step (non-trivial optimizer moments)."""
    cfg = tiny()
    mesh, step, state = train_setup(cfg, jax.devices()[:1])
    state, _ = step(state, device_batch(mesh, random_batch(*UNIT_SHAPE)))
    return cfg, state


def target_of(state):
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_is_exact_and_retention_keeps_last_and_best(tmp_path, trained):
    cfg, state = trained
    ckpt = Checkpointer(tmp_path, cfg)
    evals = {1: 0.5, 3: 1.0}  # step 1 stays best
    for step in range(1, 6):
        metrics = {"eval/loss": evals[step]} if step in evals else None
        ckpt.save(step, state, {"epoch": 0, "position": step}, metrics)
    ckpt.wait()
    assert ckpt.manager.all_steps() == [1, 4, 5]
    restored, data_state = ckpt.restore(5, target_of(state))
    ckpt.close()
    assert data_state == {"epoch": 0, "position": 5}
    assert_trees_equal(restored, state)
    assert restored["params"]["heads"].sharding == state["params"]["heads"].sharding


def test_restore_params_reads_only_the_params(tmp_path, trained):
    cfg, state = trained
    ckpt = Checkpointer(tmp_path, cfg)
    ckpt.save(2, state, {"epoch": 0, "position": 2}, {"eval/loss": 3.0})
    ckpt.save(4, state, {"epoch": 0, "position": 4})
    ckpt.close()
    for step in (2, 4):
        shutil.rmtree(RunDir(tmp_path).checkpoint(step) / "opt")  # proves it is never read
    got_cfg, params, step = restore_params(tmp_path)
    assert step == 2 and got_cfg == cfg  # best by eval/loss beats latest
    assert_trees_equal(params, state["params"])
    assert restore_params(tmp_path, "latest")[2] == 4
    assert restore_params(tmp_path, 4)[2] == 4
    with pytest.raises(CheckpointError, match="no checkpoint for step 3"):
        restore_params(tmp_path, 3)
    _, model, _ = load_model(tmp_path)
    np.testing.assert_array_equal(model.heads[...], state["params"]["heads"])


def test_a_run_with_ema_resumes_both_weights_and_samples_with_the_average(tmp_path):
    """The moving average is saved beside the params: resume restores both exactly,
    inference reads the average, and switching the average on or off mid-run is one line."""
    cfg = tiny("optim.ema_decay=0.5")
    mesh, step, state = train_setup(cfg, jax.devices()[:1])
    for seed in range(2):
        state, _ = step(state, device_batch(mesh, random_batch(*UNIT_SHAPE, seed=seed)))
    ckpt = Checkpointer(tmp_path, cfg)
    ckpt.save(2, state, {"epoch": 0, "position": 2})
    ckpt.wait()
    restored, _ = ckpt.restore(2, target_of(state))
    ckpt.close()
    assert_trees_equal(restored, state)
    _, params, _ = restore_params(tmp_path)
    assert_trees_equal(params, state["ema"])
    assert not np.array_equal(state["ema"]["heads"], state["params"]["heads"])
    plain = {k: v for k, v in state.items() if k != "ema"}
    with pytest.raises(CheckpointError, match=r"optim.ema_decay=0.5, not None") as err:
        Checkpointer(tmp_path, tiny()).restore(2, target_of(plain))
    assert "\n" not in str(err.value)


def test_incompatible_model_config_fails_naming_the_fields(tmp_path, trained):
    cfg, state = trained
    ckpt = Checkpointer(tmp_path, cfg)
    ckpt.save(1, state, {"epoch": 0, "position": 1})
    ckpt.close()
    other = tiny("model.d_model=32", "model.mlp_dim=64", "model.dropout=0.1")
    with pytest.raises(CheckpointError) as err:
        Checkpointer(tmp_path, other).restore(1, target_of(state))
    msg = str(err.value)
    assert "\n" not in msg and "model.d_model=64 (checkpoint) vs 32" in msg
    assert "mlp_dim" in msg and "dropout" not in msg
    # Runtime fields may differ.
    runtime = tiny("model.dropout=0.1", "model.remat=true")
    restored, _ = Checkpointer(tmp_path, runtime).restore(1, target_of(state))
    assert_trees_equal(restored, state)


def test_a_checkpoint_of_another_parameter_layout_is_one_line_not_damaged(tmp_path, trained):
    """Heads saved (K, D, V), as jtts stored them before they became (D, K, V): the run's
    config matches, so only the shapes can tell; resuming and sampling both refuse in one line
    naming the parameter, and nothing is moved aside as damaged."""
    cfg, state = trained
    old = {**state, "params": {**state["params"]}}
    old["params"]["heads"] = state["params"]["heads"].transpose(1, 0, 2)
    ckpt = Checkpointer(tmp_path, cfg)
    ckpt.save(1, old, {"epoch": 0, "position": 1})
    ckpt.wait()
    shape = tuple(old["params"]["heads"].shape)
    with pytest.raises(CheckpointError, match=re.escape(f"['heads'] has shape {shape}")) as err:
        ckpt.restore_latest(target_of(state))
    ckpt.close()
    assert "\n" not in str(err.value) and "another parameter layout" in str(err.value)
    with pytest.raises(CheckpointError, match="another parameter layout"):
        restore_params(tmp_path)
    assert [p.name for p in RunDir(tmp_path).checkpoints.iterdir() if "damaged" in p.name] == []


RUN_SETTINGS = (
    "data.val_fraction=0",
    "train.steps=20",
    "checkpoint.every=2",
    "checkpoint.async_save=true",
    "log.every=1",
    *TRAINER_SHAPE,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ckpt") / "store", 24, frames=(20, 90))


def start(store, workdir, *extra):
    return subprocess.Popen(
        train_command(TINY, store, workdir, *RUN_SETTINGS, *extra),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_step(proc, workdir, step, timeout=240):
    """Blocks until the run's metrics log `step` (and the process is still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = read_jsonl(RunDir(workdir).metrics)
        if records and records[-1]["step"] >= step:
            return records[-1]["step"]
        assert proc.poll() is None, f"training exited early:\n{proc.stdout.read()}"
        time.sleep(0.01)
    raise TimeoutError(f"step {step} not reached")


def finish(proc, timeout=240):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def losses(workdir):
    return {r["step"]: r["train/loss"] for r in read_jsonl(RunDir(workdir).metrics)}


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path, store):
    reference = tmp_path / "reference"
    code, out = finish(start(store, reference))
    assert code == 0, out

    run = tmp_path / "killed"
    proc = start(store, run)
    wait_for_step(proc, run, 9)
    proc.send_signal(signal.SIGKILL)
    code, _ = finish(proc)
    assert code == -signal.SIGKILL
    killed_at = max(losses(run))
    assert (run / ".lock").exists()  # the killed run's lock is left behind, and must not block
    assert killed_at < 20

    code, out = finish(start(store, run))
    assert code == 0, out
    assert "resumed from step" in out
    got, want = losses(run), losses(reference)
    assert sorted(got) == list(range(1, 21))
    assert got == want  # exact float equality, every step


def test_sigterm_saves_a_checkpoint_and_exits_with_the_documented_code(tmp_path, store):
    run = tmp_path / "preempted"
    proc = start(store, run)
    wait_for_step(proc, run, 5)
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    assert code == PREEMPTED_EXIT_CODE, out
    assert "SIGTERM: saved step" in out
    stopped = max(losses(run))
    steps = sorted(int(p.name) for p in RunDir(run).checkpoints.iterdir() if p.name.isdigit())
    assert steps[-1] == stopped < 20
    meta = json.loads(RunDir(run).config.read_text())
    assert meta["train"]["steps"] == 20


DAMAGE = ["truncated-params", "missing-opt", "garbage-meta"]


def damage(run_dir, step, kind):
    """What a full disk, a partial copy or a stray edit does to a checkpoint."""
    where = RunDir(run_dir).checkpoint(step)
    if kind == "truncated-params":
        files = [p for p in (where / "params").rglob("*") if p.is_file()]
        big = max(files, key=lambda p: p.stat().st_size)
        os.truncate(big, big.stat().st_size // 2)
    elif kind == "missing-opt":
        shutil.rmtree(where / "opt")
    else:
        (where / "meta" / "metadata").write_text("{garbage")


@pytest.fixture(scope="module")
def eight_steps(store, tmp_path_factory):
    """(config, run dir with checkpoints 4 and 8, losses) of an uninterrupted run."""
    run_dir = tmp_path_factory.mktemp("eight") / "run"
    cfg = tiny(*RUN_SETTINGS, "train.steps=8", "checkpoint.every=4", "checkpoint.async_save=false")
    assert train(cfg, store, run_dir, devices=jax.devices()[:1], progress=False) == 0
    return cfg, run_dir, losses(run_dir)


def copy_of(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("kind", DAMAGE)
def test_resume_skips_a_damaged_latest_checkpoint(tmp_path, store, eight_steps, kind):
    cfg, original, want = eight_steps
    run = copy_of(original, tmp_path)
    damage(run, 8, kind)
    with pytest.warns(DamagedCheckpointWarning, match=r"checkpoints: step 8 \(.+\); using step 4"):
        assert train(cfg, store, run, devices=jax.devices()[:1], progress=False) == 0
    assert losses(run) == want  # steps 5..8 again, bit-identical
    assert [p.name.partition("-")[0] for p in RunDir(run).checkpoints.glob("8.damaged-*")] == [
        "8.damaged"
    ]
    assert restore_params(run, 8)[2] == 8  # saved again, intact


@pytest.mark.parametrize("kind", DAMAGE)
def test_sampling_skips_a_damaged_checkpoint(tmp_path, eight_steps, kind):
    run = copy_of(eight_steps[1], tmp_path)
    damage(run, 8, kind)
    if kind == "missing-opt":  # inference never reads the optimizer state
        assert restore_params(run)[2] == 8
        return
    with pytest.warns(DamagedCheckpointWarning, match=r"step 8 \(.+\); using step 4"):
        assert restore_params(run)[2] == 4
    with pytest.raises(CheckpointError, match=r"checkpoint .*/checkpoints/8 is damaged \("):
        restore_params(run, 8)  # asked for by number: no silent substitute


def test_no_intact_checkpoint_is_one_line(tmp_path, store, eight_steps, capsys):
    run = copy_of(eight_steps[1], tmp_path)
    damage(run, 8, "garbage-meta")
    damage(run, 4, "truncated-params")
    args = ["--config", str(TINY), "--data", str(store), "--workdir", str(run)]
    assert main([*args, "--set", *RUN_SETTINGS, "train.steps=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("jtts.train: error: no intact checkpoint")
    assert "step 8: JSONDecodeError" in err and "step 4: " in err
    assert sorted(p.name for p in RunDir(run).checkpoints.iterdir()) == ["4", "8"]  # untouched
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        restore_params(run)


def test_cli_warns_about_a_damaged_checkpoint_in_one_line(tmp_path, store, eight_steps):
    run = copy_of(eight_steps[1], tmp_path)
    damage(run, 8, "garbage-meta")
    proc = subprocess.run(
        train_command(TINY, store, run, *RUN_SETTINGS, "train.steps=8"),
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "damaged" in ln]
    assert len(lines) == 1 and lines[0].startswith("jtts.train: warning: damaged checkpoint in ")
    assert "step 8 (JSONDecodeError: " in lines[0] and lines[0].endswith("using step 4")
    assert "Traceback" not in proc.stderr and "resumed from step 4" in proc.stdout


def test_abandoned_orbax_reads_are_not_logged_but_other_tasks_are(caplog):
    """A damaged step's other concurrent reads fail too and are never awaited; asyncio logs
    them when collected (a traceback at a moment the garbage collector picks). Those raised
    in orbax's code are dropped, any other task's are still logged."""
    import orbax.checkpoint._src.serialization.serialization as ser

    scope: dict = {}
    exec(compile("async def read():\n    raise ValueError('orbax')\n", ser.__file__, "exec"), scope)

    async def ours():
        raise ValueError("ours")

    async def main():
        tasks = [asyncio.ensure_future(scope["read"]()), asyncio.ensure_future(ours())]
        await asyncio.sleep(0.01)
        tasks.clear()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
        gc.collect()
    logged = [r.exc_info[1].args[0] for r in caplog.records if r.exc_info]
    assert logged == ["ours"]


@pytest.mark.slow
def test_two_processes_resume_past_a_damaged_checkpoint(tmp_path, store, eight_steps):
    """On several hosts every process skips the damaged step alike (one warning line each),
    process 0 moves it aside before any process reloads, and the run saves that step again."""
    _, original, want = eight_steps
    run = copy_of(original, tmp_path)
    damage(run, 8, "truncated-params")
    sets = (*UNIT_OVERRIDES, "checkpoint.keep=2", *RUN_SETTINGS, "train.steps=8")
    sets += ("checkpoint.every=4", "checkpoint.async_save=false")  # as `eight_steps` was run
    procs = run_processes(train_command(TINY, store, run, *sets))
    outs = [p.stdout for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    for out in outs:
        warned = [ln for ln in out.splitlines() if "damaged checkpoint" in ln]
        assert len(warned) == 1 and "step 8 (" in warned[0], out[-3000:]
        assert warned[0].endswith("using step 4") and "Traceback" not in out
    assert "resumed from step 4" in outs[0]
    assert len(list(RunDir(run).checkpoints.glob("8.damaged-*"))) == 1
    assert restore_params(run, 8)[2] == 8  # saved again, intact
    got = losses(run)
    assert sorted(got) == sorted(want)
    np.testing.assert_allclose(
        [got[s] for s in sorted(want)], [want[s] for s in sorted(want)], rtol=1e-5
    )  # 2 devices instead of 1: other reduction order


@pytest.mark.slow
def test_full_disk_while_saving_is_one_line_and_a_rerun_resumes(tmp_path, store):
    """A checkpoint that does not fit is one line naming the run (exit 2), not an orbax
    traceback; with room again the same command trains to the end."""
    disk = tmp_path / "disk"
    sets = (*RUN_SETTINGS, "train.steps=4", "checkpoint.async_save=false", "log.tensorboard=false")
    argv = train_command(TINY, store, disk / "run", *sets)
    out = sandbox.run(
        sandbox.tmpfs(disk, "2m")
        + sandbox.command(argv)
        + f"mount -o remount,size=400m {disk}\n"
        + sandbox.command(argv),
        timeout=900,
        env=subprocess_env(TQDM_DISABLE="1"),
    )
    assert re.findall(r"^rc=(\d+)$", out, re.M) == ["2", "0"], out
    errors = [ln for ln in out.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith(f"jtts.train: error: {disk / 'run'}"), out
    assert "no space left on device" in errors[0].lower() and "rerun" in errors[0]
    assert "Traceback" not in out and "stopped at step 4" in out
