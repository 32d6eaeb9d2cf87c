"""`python -m jtts.export --workdir RUN --out models/NAME [--step N]`: a training run's
checkpoint as a shipped model (`jtts.shipped`), which `python -m jtts.sample --workdir
models/NAME` speaks with. Prints one line: the folder's files, sizes and sha256."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flax import nnx

from jtts import shipped
from jtts.trained_run import UsageError, load_run


def export(workdir: str | Path, out: str | Path, step: int | None = None) -> dict[str, Any]:
    """Writes the shipped model of `workdir`'s best (or `step`) checkpoint; its model.json."""
    if shipped.is_shipped(workdir):
        raise UsageError(f"--workdir {workdir} is already a shipped model")
    run = load_run(workdir, step)
    params = nnx.to_pure_dict(nnx.state(run.model, nnx.Param))
    provenance = {"run": str(Path(workdir).absolute()), "store": run.store_meta.get("store_dir")}
    corpus = Path(run.store_meta.get("source", {}).get("input", "")) / "corpus.json"
    if corpus.is_file():  # a speechcorpus corpus names its voice
        provenance["voice"] = json.loads(corpus.read_text(encoding="utf-8")).get("voice")
    try:
        return shipped.write(out, run.cfg, params, run.step, run.store_meta, provenance)
    except shipped.ShippedError as e:
        raise UsageError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jtts.export", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="training run directory")
    p.add_argument("--out", required=True, help="shipped model folder to write")
    p.add_argument("--step", type=int, help="checkpoint step (default: best, else latest)")
    a = p.parse_args(argv)
    try:
        manifest = export(a.workdir, a.out, a.step)
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
