"""`python -m jtts.train --config configs/NAME.yaml --data STORE --workdir RUN_DIR [--set k=v]`.

Rerunning the same command resumes from RUN_DIR's latest intact checkpoint. Exit code 0 when
done, 75 after SIGTERM (checkpoint saved; rerun to resume), 2 for a config/store/checkpoint
mismatch, a run directory in use or of a newer layout, or a full disk, 1 when a non-finite
loss stopped the run (one-line messages; warnings are one line too).
"""

import argparse
import errno
import sys
import warnings

from codec_bridge.format import StoreError
from jtts import trainer
from jtts.checkpoint import CheckpointError
from jtts.config import ConfigError
from jtts.rundir import RunDirError


def _show(message, category, *_args, **_kwargs) -> None:
    print(f"jtts.train: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jtts.train", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/small.yaml")
    p.add_argument("--data", required=True, help="code store directory")
    p.add_argument("--workdir", required=True, help="run directory (created; resumed if present)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. --set optim.lr=1e-4 train.steps=100 (repeatable)",
    )
    g = p.add_argument_group("multi-process (one process per host)")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="jax.distributed.initialize() with auto-detection (TPU pods, SLURM)",
    )
    g.add_argument("--coordinator", help="HOST:PORT of process 0, for manual setups")
    g.add_argument("--num-processes", type=int)
    g.add_argument("--process-id", type=int)
    a = p.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show
        return _run(a)


def _run(a: argparse.Namespace) -> int:
    try:
        return trainer.run(
            a.config,
            a.data,
            a.workdir,
            a.overrides,
            coordinator=a.coordinator,
            num_processes=a.num_processes,
            process_id=a.process_id,
            distributed=a.distributed,
        )
    except (ConfigError, StoreError, CheckpointError, trainer.SetupError, RunDirError) as e:
        print(f"jtts.train: error: {e}", file=sys.stderr)
        return 2
    except trainer.NonFiniteLossError as e:
        print(f"jtts.train: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk or a vanished file while writing the run: one line
        where = f"{e.filename}: " if e.filename else ""
        resume = "; free some space and rerun to resume" if e.errno == errno.ENOSPC else ""
        print(f"jtts.train: error: {where}{e.strerror or e}{resume}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
