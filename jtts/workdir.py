"""One trainer per run directory: a second `jtts.train` on a busy --workdir stops at once.

Two trainers on one run directory would interleave their metrics and overwrite each other's
checkpoints. Process 0 of a run holds the run's lock file (`RunDir.lock`; `codec_bridge.lock`:
an flock naming pid and host, released by the kernel however the process ends, so a killed
run never blocks its resume); the other processes of a multi-host run share the directory.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import jax

from codec_bridge.lock import LockedError, acquire
from jtts.rundir import RunDir, RunDirError


class WorkdirError(RunDirError):
    """The run directory is in use by another trainer, or cannot be written."""


def lock_run_dir(run_dir: str | Path) -> contextlib.AbstractContextManager:
    """Holds the run directory for this run (a no-op on processes other than 0)."""
    if jax.process_index() != 0:
        return contextlib.nullcontext()
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        return acquire(RunDir(run_dir).lock, f"run directory {run_dir}")
    except LockedError as e:
        raise WorkdirError(str(e)) from None
    except OSError as e:
        raise WorkdirError(f"{run_dir}: cannot write the run directory ({e.strerror})") from None
