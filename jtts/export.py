"""`python -m jtts.export --workdir RUN --out models/NAME [--step N] [--set sample.KEY=V ...]`:
a training run's checkpoint as a shipped model (`jtts.shipped`), which `python -m jtts.sample
--workdir models/NAME` speaks with. `--set` ships other sampling defaults than the run's, as
measured after training (Piper's voice files carry theirs); nothing else of the config may
change, since the weights were trained with it. A shipped model as `--workdir` (`--out` may be
the same folder) gets the `--set` defaults and keeps its files. Prints one line: the folder's
files, sizes and sha256."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flax import nnx

from jtts import shipped
from jtts.config import ConfigError, apply_overrides
from jtts.trained_run import UsageError, load_run


def export(
    workdir: str | Path, out: str | Path, step: int | None = None, sample: Sequence[str] = ()
) -> dict[str, Any]:
    """Writes the shipped model of `workdir`'s best (or `step`) checkpoint, or of the shipped
    model `workdir`, with the `sample` overrides (`sample.KEY=V`) as its sampling defaults;
    its model.json."""
    for item in sample:
        if not item.startswith("sample."):
            raise UsageError(f"--set {item}: a shipped model changes only its sample.* settings")
    if shipped.is_shipped(workdir):
        if step is not None:
            raise UsageError(f"--step {step}: {workdir} is a shipped model, of one step")
        try:
            cfg = apply_overrides(shipped.read_config(workdir), sample)
            return shipped.with_sampling(workdir, out, cfg)
        except ConfigError as e:
            raise UsageError(f"--set: {e}") from None
        except shipped.ShippedError as e:
            raise UsageError(str(e)) from None
    run = load_run(workdir, step)
    try:
        cfg = apply_overrides(run.cfg, sample)
    except ConfigError as e:
        raise UsageError(f"--set: {e}") from None
    params = nnx.to_pure_dict(nnx.state(run.model, nnx.Param))
    provenance = {"run": str(Path(workdir).absolute()), "store": run.store_meta.get("store_dir")}
    corpus = Path(run.store_meta.get("source", {}).get("input", "")) / "corpus.json"
    if corpus.is_file():  # a speechcorpus corpus names its voice
        provenance["voice"] = json.loads(corpus.read_text(encoding="utf-8")).get("voice")
    try:
        return shipped.write(out, cfg, params, run.step, run.store_meta, provenance)
    except shipped.ShippedError as e:
        raise UsageError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jtts.export", description=__doc__.split("\n")[0])
    p.add_argument(
        "--workdir", required=True, help="training run directory, or a shipped model folder"
    )
    p.add_argument("--out", required=True, help="shipped model folder to write")
    p.add_argument("--step", type=int, help="checkpoint step (default: best, else latest)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="sample.KEY=V",
        help="a sampling default to ship instead of the run's (repeatable)",
    )
    a = p.parse_args(argv)
    try:
        manifest = export(a.workdir, a.out, a.step, a.set)
    except (UsageError, OSError) as e:
        print(f"jtts.export: error: {e}", file=sys.stderr)
        return 2
    files = ", ".join(
        f"{name} {(Path(a.out) / name).stat().st_size / 1e6:.1f} MB sha256 {digest}"
        for name, digest in manifest["files"].items()
    )
    print(f"jtts.export: {a.out} (step {manifest['step']}): {files}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
