"""A shipped model: one folder that speaks with no training run, no code store and no network
(`models/NAME/`, packaged the way Piper ships a voice: a weights file beside its JSON).

    model.json       the contract: format, the resolved config, the checkpoint step, the codec
                     meta the codes are decoded with, each file's sha256, where it came from
    params.msgpack   the inference weights (the run's moving average when it kept one) in
                     float16, `flax.serialization` msgpack of `nnx.split(model, nnx.Param)`
    codec.pt         the codec weights file of the run's code store, copied

`write` makes it (from `jtts.export`), `with_sampling` gives it other sampling defaults (the
same files, a new model.json), `is_shipped` and `read` are how `jtts.trained_run.load_run`
opens it beside a training run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx, serialization

from codec_bridge.format import StoreError, file_sha256, weights_file
from jtts.config import Config, config_from_dict, config_to_dict
from jtts.model import build_model, params_by_path

FORMAT = 1
MODEL_JSON, PARAMS, CODEC = "model.json", "params.msgpack", "codec.pt"


class ShippedError(Exception):
    """A shipped model folder that is incomplete, altered or of another format."""


def is_shipped(folder: str | Path) -> bool:
    return (Path(folder) / MODEL_JSON).is_file()


def write(
    out: str | Path,
    cfg: Config,
    params: Any,
    step: int,
    store_meta: dict[str, Any],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """Writes the folder `out` (new or emptied of the three files) and returns its model.json."""
    out = Path(out)
    try:
        source = weights_file(store_meta)
    except StoreError:
        raise ShippedError(
            f"the run's store names no codec weights file to ship ({store_meta['weights']})"
        ) from None
    want = store_meta["weights"].get("sha256")
    if source is not None and want and file_sha256(source) != want:
        raise ShippedError(f"{source}: sha256 differs from the codec the store was made with")
    out.mkdir(parents=True, exist_ok=True)
    half = {path: np.asarray(x, np.float16) for path, x in params_by_path(params).items()}
    (out / PARAMS).write_bytes(serialization.msgpack_serialize(half))
    files = {PARAMS: file_sha256(out / PARAMS)}
    codec = {k: v for k, v in store_meta.items() if k not in ("store_dir", "created", "source")}
    if source is not None:
        shutil.copyfile(source, out / CODEC)
        files[CODEC] = file_sha256(out / CODEC)
        codec["weights"] = {"kind": "file", "path": CODEC, "sha256": files[CODEC]}
    manifest = {
        "format": FORMAT,
        "step": int(step),
        "config": config_to_dict(cfg),
        "codec": codec,
        "files": files,
        "provenance": provenance,
    }
    _write_manifest(out, manifest)
    return manifest


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    (out / MODEL_JSON).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MODEL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ShippedError(f"{folder / MODEL_JSON}: unreadable ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise ShippedError(f"{folder / MODEL_JSON}: format {got!r}, this jtts reads {FORMAT}")
    return manifest


def checked(folder: Path) -> dict[str, Any]:
    """The folder's model.json, once each file it names matches its sha256."""
    manifest = _manifest(folder)
    for name, want in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ShippedError(f"{path}: missing from the shipped model")
        if file_sha256(path) != want:
            raise ShippedError(f"{path}: sha256 differs from {MODEL_JSON}'s (altered or damaged)")
    return manifest


def with_sampling(folder: str | Path, out: str | Path, cfg: Config) -> dict[str, Any]:
    """The shipped model `folder` as `out` (which may be `folder`) with `cfg`, its config with
    other sampling defaults: the same files, checked and copied, and the same step and
    provenance in a new model.json, which it returns."""
    folder, out = Path(folder).absolute(), Path(out).absolute()
    manifest = {**checked(folder), "config": config_to_dict(cfg)}
    if out != folder:
        out.mkdir(parents=True, exist_ok=True)
        for name in manifest["files"]:
            shutil.copyfile(folder / name, out / name)
    _write_manifest(out, manifest)
    return manifest


def read_config(folder: str | Path) -> Config:
    """The shipped model's config alone (no weights read)."""
    return config_from_dict(_manifest(Path(folder))["config"])


def read(folder: str | Path) -> tuple[Config, nnx.Module, int, dict[str, Any]]:
    """(config, model, step, codec meta with the codec file's absolute path), each file checked
    against its sha256."""
    folder = Path(folder).absolute()
    manifest = checked(folder)
    cfg = config_from_dict(manifest["config"])
    abstract = nnx.eval_shape(lambda: build_model(cfg.model, nnx.Rngs(0)))
    graphdef, target = nnx.split(abstract, nnx.Param)
    target = nnx.to_pure_dict(target)
    saved = serialization.msgpack_restore((folder / PARAMS).read_bytes())
    flat = params_by_path(target)
    if set(saved) != set(flat) or any(saved[k].shape != flat[k].shape for k in flat):
        raise ShippedError(f"{folder / PARAMS}: its arrays do not fit {MODEL_JSON}'s model")
    leaves = [jax.numpy.asarray(saved[k], flat[k].dtype) for k in flat]
    params = jax.tree.unflatten(jax.tree.structure(target), leaves)
    codec = dict(manifest["codec"])
    if CODEC in manifest["files"]:
        codec["weights"] = {**codec["weights"], "path": str(folder / CODEC)}
    return cfg, nnx.merge(graphdef, params), int(manifest["step"]), codec
