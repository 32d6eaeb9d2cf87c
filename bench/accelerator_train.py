"""A larger voices model trained on one lent GPU in one call (issues 25 and 26).

The shipped `models/voices` (2.85 M parameters) is at its size's limit on 2 CPU cores
(models/README.md). This trains `configs/voices.yaml` at the `small` size (d 256, 4 + 6 layers,
15.2 M parameters) in bf16, from scratch, on the voices store built on this machine. The
learning rate is constant after warm-up and the weights are averaged (EMA), so the stop at the
time limit (SIGTERM: the trainer saves a checkpoint and exits 75) leaves a model to export.

A device call carries at most 64 MiB with the working tree (about 43 MiB), so the 38 MB store
travels as xz (about 19 MB), with the tokenizer the run reads the text with and the wheels the
GPU image lacks (`bash bench/accelerator.sh --wheels`):

    python bench/accelerator_train.py pack --store STORE        # here: writes .carry/
    bash bench/accelerator.sh --train OUT SECONDS               # the GPU machine (carry .whl, .carry)
    python bench/accelerator_train.py join --out OUT --model /tmp/NAME   # here

`train` (what `accelerator.sh --train` runs) first checks that the image encodes text into the
same ids as this machine did (another transformers), and refuses in one line if not. It writes
to OUT the exported model (params.msgpack in parts under the 16 MiB a returned file may have;
the codec stays here), the run's config and metrics, and `summary.json`. `join` reassembles the
parts, checks them against model.json's sha256 and adds the codec from `codecs/`, into a new
folder: outside the repository, since 38 MB more in the working tree would take every later
device call over its 64 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec_bridge.cache import cache_dir  # noqa: E402
from codec_bridge.format import file_sha256  # noqa: E402
from jtts.config import load_config  # noqa: E402
from jtts.data import encode_text  # noqa: E402
from jtts.metrics import read_jsonl  # noqa: E402
from jtts.rundir import RunDir  # noqa: E402
from jtts.shipped import CODEC, MODEL_JSON, PARAMS, ShippedError, checked  # noqa: E402

CONFIG = "configs/voices.yaml"
# `small`'s model (configs/small.yaml) with dropout for the many epochs over 16 h, a 16x larger
# batch than the CPU's, and a schedule that any stop leaves usable.
OVERRIDES = (
    "model.d_model=256",
    "model.enc_layers=4",
    "model.dec_layers=6",
    "model.mlp_dim=1024",
    "model.dropout=0.1",
    "model.dtype=bfloat16",
    "data.batch_frames=32768",
    "optim.lr=0.001",
    "optim.warmup_steps=500",
    "optim.decay=constant",
    "optim.ema_decay=0.999",
    "train.init_from=null",
    "train.steps=1000000",
    "checkpoint.every=2000",
    "checkpoint.keep=2",
    "eval.every=1000",
)
CARRY = ROOT / ".carry"
PART_BYTES = 15 * 2**20
CALL_BYTES = 64 * 2**20  # what one device call may carry, the working tree included
PROBES = ("Please close the window before you go to bed.", "On 3 May 1999 it cost $4.50.")
STOPPED = (0, 75)  # done; SIGTERM saved a checkpoint (143: killed before it could, 137: hung)
TIMEOUT = ("timeout", "--preserve-status", "-s", "TERM", "-k", "60")  # SIGKILL 1 min later


class Refused(Exception):
    """A one-line reason to stop."""


def _tar_xz(src: Path, arcname: str, dest: Path) -> None:
    with tarfile.open(dest, "w:xz") as tar:
        tar.add(src, arcname=arcname)


def pack(
    store: Path,
    config: str,
    overrides: list[str],
    carry: Path = CARRY,
    max_bytes: int = CALL_BYTES,
) -> dict:
    """`carry/`: the store and the tokenizer cache as xz, the codec's path inside the
    repository and the ids `PROBES` encode to here; refused (and `carry` left as it was) when
    it, `.whl/` and the working tree hold more than `max_bytes`."""
    meta = json.loads((store / "meta.json").read_text())
    codec = None
    if meta["weights"]["kind"] == "file":
        path = Path(meta["weights"]["path"]).resolve()
        if not path.is_relative_to(ROOT):
            raise Refused(f"{path}: the store's codec must be in the repository to travel")
        codec = str(path.relative_to(ROOT))
    tokenizers = cache_dir() / "tokenizers"
    cfg = load_config(ROOT / config, overrides)
    ids = _probe_ids(cfg)
    new = carry.with_name(carry.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    _tar_xz(store, "store", new / "store.tar.xz")
    _tar_xz(tokenizers, "tokenizers", new / "tokenizers.tar.xz")
    plan = {"config": config, "overrides": overrides, "codec": codec, "probes": ids}
    (new / "plan.json").write_text(json.dumps(plan) + "\n")
    sizes = {"tree": _tree_bytes(), "carry": _bytes(new), "wheels": _bytes(ROOT / ".whl")}
    if sum(sizes.values()) > max_bytes:
        shutil.rmtree(new)
        raise Refused(f"the working tree, the carry and .whl/ hold {sizes} bytes, over {max_bytes}")
    shutil.rmtree(carry, ignore_errors=True)
    new.rename(carry)
    return {"bytes": sizes, **plan}


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0


def _tree_bytes() -> int:
    """Bytes of what a device call copies besides the carried paths: the files git tracks or
    does not ignore (`.carry/` and `.whl/` are ignored)."""
    names = subprocess.check_output(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT)
    return sum(
        (ROOT / n).stat().st_size for n in names.decode().splitlines() if (ROOT / n).is_file()
    )


def _probe_ids(cfg) -> list[list[int]]:
    return [
        [int(i) for i in encode_text(t, cfg.data.text_normalizer, cfg.model.text_units)]
        for t in PROBES
    ]


def _check_text(cfg, probes: list[list[int]]) -> None:
    if _probe_ids(cfg) != probes:
        raise Refused("this machine encodes text into other ids than the packing one did")


def _split(path: Path, part_bytes: int = PART_BYTES) -> list[str]:
    data, names = path.read_bytes(), []
    for i in range(0, len(data), part_bytes):
        names.append(f"{path.name}.part{len(names):02d}")
        (path.parent / names[-1]).write_bytes(data[i : i + part_bytes])
    path.unlink()
    return names


def train(out: Path, seconds: int, carry: Path = CARRY, work: Path | None = None) -> dict:
    """Unpacks `carry`, trains for at most `seconds`, exports the model into `out`."""
    if seconds < 1:
        raise Refused(f"--seconds {seconds}: give the training at least one second")
    plan = json.loads((carry / "plan.json").read_text())
    work = work or Path("/tmp/jtts-accelerator-train")
    shutil.rmtree(work, ignore_errors=True)
    (work / "cache").mkdir(parents=True)
    for name, into in (("store", work), ("tokenizers", work / "cache")):
        with tarfile.open(carry / f"{name}.tar.xz") as tar:
            tar.extractall(into, filter="data")
    store = work / "store"
    if plan["codec"]:  # where the codec is in this machine's copy of the repository
        meta = json.loads((store / "meta.json").read_text())
        meta["weights"]["path"] = str(ROOT / plan["codec"])
        (store / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    os.environ.update(JTTS_CACHE=str(work / "cache"), HF_HUB_OFFLINE="1")  # children too
    _check_text(load_config(ROOT / plan["config"], plan["overrides"]), plan["probes"])
    run = work / "run"
    cmd = [sys.executable, "-m", "jtts.train", "--config", str(ROOT / plan["config"])]
    cmd += ["--data", str(store), "--workdir", str(run), "--set", *plan["overrides"]]
    t0 = time.perf_counter()
    code = subprocess.call([*TIMEOUT, str(seconds), *cmd], cwd=ROOT)
    train_s = time.perf_counter() - t0
    if code not in STOPPED:
        raise Refused(f"jtts.train exited {code} (its log is above)")
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model"
    exported = [sys.executable, "-m", "jtts.export", "--workdir", str(run), "--out", str(model)]
    if subprocess.call(exported, cwd=ROOT) != 0:
        raise Refused(f"jtts.export of {run} failed (its line is above)")
    (model / CODEC).unlink(missing_ok=True)  # `join` adds it from this repository's copy
    parts = _split(model / PARAMS)
    rd = RunDir(run)
    shutil.copyfile(rd.config, out / "config.json")
    shutil.copyfile(rd.metrics, out / "metrics.jsonl")
    rows = read_jsonl(rd.metrics)
    evals = [r for r in rows if "eval/loss" in r]
    summary = {
        "exit": code,
        "train_s": round(train_s, 1),
        "step": json.loads((model / MODEL_JSON).read_text())["step"],
        "eval": evals[-1] if evals else None,
        "parts": parts,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def join(out: Path, model: Path) -> dict:
    """`out/model`'s parts as one params.msgpack in `model`, beside the codec from the
    repository; every file checked against model.json's sha256."""
    if model.exists():
        raise Refused(f"{model} exists; join into a new folder")
    src = out / "model"
    manifest = json.loads((src / MODEL_JSON).read_text())
    new = model.with_name(model.name + ".joining")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    with open(new / PARAMS, "wb") as f:
        for part in sorted(src.glob(f"{PARAMS}.part*")):
            f.write(part.read_bytes())
    for codec in (ROOT / "codecs").glob("*.pt"):
        if file_sha256(codec) == manifest["files"].get(CODEC):
            shutil.copyfile(codec, new / CODEC)
            break
    shutil.copyfile(src / MODEL_JSON, new / MODEL_JSON)
    try:
        checked(new)
    except ShippedError as e:
        shutil.rmtree(new)
        raise Refused(f"{src} joined: {e}") from None
    new.rename(model)
    return manifest["files"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack", help="here: the store, tokenizer and plan into .carry/")
    a.add_argument("--store", type=Path, required=True)
    a.add_argument("--config", default=CONFIG)
    a.add_argument(
        "--set",
        nargs="*",
        default=list(OVERRIDES),
        dest="overrides",
        help="the config's overrides, in place of the default ones (the small size, bf16, ...)",
    )
    a.add_argument("--carry", type=Path, default=CARRY)
    a.add_argument("--max-bytes", type=int, default=CALL_BYTES, help="what one call may carry")
    b = sub.add_parser("train", help="the GPU machine: train, export into --out")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--seconds", type=int, required=True)
    b.add_argument("--carry", type=Path, default=CARRY)
    b.add_argument("--work", type=Path)
    c = sub.add_parser("join", help="here: --out's parts as the model folder --model")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--model", type=Path, required=True)
    o = p.parse_args(argv)
    try:
        if o.command == "pack":
            result = pack(o.store, o.config, o.overrides, o.carry, o.max_bytes)
        elif o.command == "train":
            result = train(o.out, o.seconds, o.carry, o.work)
        else:
            result = join(o.out, o.model)
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 (a device call ends in one line, not a traceback)
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
