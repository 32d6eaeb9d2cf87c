"""The shipped model folder (`jtts.shipped`): float16 weights that restore the run's model,
and a folder that is incomplete, altered or of another format refused in one line naming the
file (the tiny run of test_sampler; test_export speaks with one end to end)."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from test_sampler import cli, run  # noqa: F401 (fixtures)

from jtts import shipped
from jtts.trained_run import list_names, load_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(run, tmp_path_factory):  # noqa: F811
    """The tiny run shipped with the pretrained codec (no codec file to copy)."""
    r = load_run(run[0])
    meta = {**r.store_meta, "weights": {"kind": "pretrained"}}
    out = tmp_path_factory.mktemp("shipped") / "model"
    params = nnx.to_pure_dict(nnx.state(r.model, nnx.Param))
    shipped.write(out, r.cfg, params, r.step, meta, {"run": str(run[0])})
    return out, r, params


def test_weights_come_back_as_their_float16_rounding(folder):
    out, r, params = folder
    cfg, model, step, codec = shipped.read(out)
    assert cfg == r.cfg and step == r.step and codec["weights"] == {"kind": "pretrained"}
    assert sorted(p.name for p in out.iterdir()) == [shipped.MODEL_JSON, shipped.PARAMS]
    back = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    want = jax.tree.map(lambda x: np.asarray(x, np.float16).astype(np.float32), params)
    jax.tree.map(np.testing.assert_array_equal, back, want)
    assert max(jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), back, params))) > 0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("flip", "params.msgpack: sha256 differs"),
        ("remove", "params.msgpack: missing"),
        ("format", "format 99, this jtts reads 1"),
        ("garbage", "model.json: unreadable"),
    ],
)
def test_a_damaged_folder_is_one_line_naming_the_file(folder, tmp_path, capsys, damage, message):
    out = tmp_path / "model"
    shutil.copytree(folder[0], out)
    manifest = json.loads((out / shipped.MODEL_JSON).read_text())
    if damage == "flip":
        data = bytearray((out / shipped.PARAMS).read_bytes())
        data[-1] ^= 1
        (out / shipped.PARAMS).write_bytes(bytes(data))
    elif damage == "remove":
        (out / shipped.PARAMS).unlink()
    elif damage == "format":
        (out / shipped.MODEL_JSON).write_text(json.dumps({**manifest, "format": 99}))
    else:
        (out / shipped.MODEL_JSON).write_text("{not json")
    code, _, err = cli(
        capsys, "--workdir", out, "--text", "hello", "--codes-out", tmp_path / "x.npy"
    )
    assert code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(
    "name", sorted(p.parent.name for p in (ROOT / "models").glob(f"*/{shipped.MODEL_JSON}"))
)
def test_the_repositorys_models_load_with_their_voices(name):
    """Every folder in models/ still loads with today's code: files match their sha256, the
    config parses and the weights fit its model; a speaker table names its voices."""
    cfg, model, step, codec = shipped.read(ROOT / "models" / name)
    assert step > 0 and Path(codec["weights"]["path"]).is_file()
    assert isinstance(model, nnx.Module) and cfg.model.n_codebooks == codec["n_codebooks"]
    table = [c for c in cfg.model.conditions if c.name == "speaker"]
    if table:
        assert len(list_names(ROOT / "models" / name, "speaker")) >= 6
