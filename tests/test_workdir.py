"""One trainer per run directory: a second `jtts.train` is refused at once, naming the first;
a killed trainer's lock does not block its resume."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synthetic import (
    TRAINER_SHAPE,
    make_store,
    subprocess_env,
    train_command,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from codec_bridge.lock import holder
from jtts.metrics import read_jsonl
from jtts.rundir import RunDir
from jtts.workdir import WorkdirError, lock_run_dir

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
SETTINGS = (
    "data.val_fraction=0",
    "train.steps=12",
    "checkpoint.every=4",
    "log.every=1",
    *TRAINER_SHAPE,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("workdir") / "store", 24, frames=(20, 90))


@pytest.mark.slow
def test_a_second_trainer_on_the_same_workdir_is_refused(tmp_path, store):
    run = tmp_path / "run"
    cmd = train_command(TINY, store, run, *SETTINGS)
    first = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not read_jsonl(RunDir(run).metrics):  # the first trainer has logged a step
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # a live trainer, paused mid-run
    try:
        second = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True)
    finally:
        first.send_signal(signal.SIGCONT)
    err = second.stderr.strip()
    assert second.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"jtts.train: error: run directory {run} is in use by pid {first.pid}")
    assert " on host " in err and "Traceback" not in second.stdout + err
    out, _ = first.communicate(timeout=240)
    assert first.returncode == 0, out
    assert [r["step"] for r in read_jsonl(RunDir(run).metrics)] == list(range(1, 13))


def test_a_killed_trainers_lock_does_not_block(tmp_path):
    script = (
        "import time; from jtts.workdir import lock_run_dir; "
        f"lock_run_dir({str(tmp_path)!r}); print('held', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    with pytest.raises(WorkdirError, match=f"is in use by pid {proc.pid} on host"):
        lock_run_dir(tmp_path)
    proc.kill()
    proc.wait()
    lock = RunDir(tmp_path).lock
    assert lock.exists() and holder(lock) is None
    with lock_run_dir(tmp_path):
        assert holder(lock) is not None
