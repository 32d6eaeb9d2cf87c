"""Mesh and shardings: axis sizes, the FSDP rule, and a 2x4 mesh matching one device."""

from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from synthetic import (
    UNIT_OVERRIDES,
    UNIT_SHAPE,
    device_batch,
    random_batch,
    train_setup,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from jtts.config import ConfigError, MeshConfig, apply_overrides, load_config
from jtts.mesh import batch_sharding, fsdp_spec, make_mesh, mesh_shape, state_shardings
from jtts.optim import abstract_state, make_optimizer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny(*overrides):
    return apply_overrides(load_config(CONFIGS / "tiny.yaml"), overrides)


def test_mesh_shape_fills_minus_one_and_rejects_bad_sizes():
    assert mesh_shape(MeshConfig(data=-1, fsdp=1), 8) == (8, 1)
    assert mesh_shape(MeshConfig(data=2, fsdp=-1), 8) == (2, 4)
    assert mesh_shape(MeshConfig(data=2, fsdp=4), 8) == (2, 4)
    with pytest.raises(ValueError, match="does not divide"):
        mesh_shape(MeshConfig(data=3, fsdp=-1), 8)
    with pytest.raises(ValueError, match="needs 6 devices, found 8"):
        mesh_shape(MeshConfig(data=2, fsdp=3), 8)
    with pytest.raises(ConfigError):
        MeshConfig(data=-1, fsdp=-1)


def test_make_mesh_uses_all_devices_with_named_axes():
    mesh = make_mesh(MeshConfig(data=2, fsdp=-1))
    assert mesh.axis_names == ("data", "fsdp") and dict(mesh.shape) == {"data": 2, "fsdp": 4}
    assert batch_sharding(mesh).spec == P(("data", "fsdp"))


@pytest.mark.parametrize(
    ("shape", "fsdp", "spec"),
    [
        ((51865, 64), 4, P(None, "fsdp")),  # vocab not divisible: shard the model dim
        ((64, 128), 4, P(None, "fsdp")),  # largest divisible dimension
        ((128, 128), 4, P("fsdp")),  # ties: the first
        ((8, 1027, 64), 4, P(None, None, "fsdp")),
        ((7,), 4, P()),  # nothing divisible: replicated
        ((), 4, P()),
        ((64, 128), 1, P()),
    ],
)
def test_fsdp_rule(shape, fsdp, spec):
    assert fsdp_spec(shape, fsdp) == spec


def test_state_shardings_cover_params_and_optimizer_moments():
    cfg = tiny("train.mesh.data=2", "train.mesh.fsdp=4")
    mesh = make_mesh(cfg.train.mesh)
    abstract = abstract_state(cfg, make_optimizer(cfg.optim))
    shardings = state_shardings(abstract, mesh)
    for x, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings), strict=True):
        assert s.spec == fsdp_spec(x.shape, 4)
    assert shardings["params"]["conditioner"]["text_embed"].spec == P(None, "fsdp")


def test_2x4_mesh_trains_like_one_device():
    """Same batch, two steps: losses and parameters agree to float tolerance."""
    batch = random_batch(*UNIT_SHAPE, seed=1)
    results = []
    for mesh_cfg, devices in (
        (("data=1", "fsdp=1"), jax.devices()[:1]),
        (("data=2", "fsdp=4"), None),
    ):
        cfg = tiny(*UNIT_OVERRIDES, *(f"train.mesh.{m}" for m in mesh_cfg))
        mesh, step, state = train_setup(cfg, devices)
        losses = []
        for _ in range(2):
            state, metrics = step(state, device_batch(mesh, batch))
            losses.append(float(metrics["loss"]))
        results.append((losses, jax.device_get(state["params"]), state))
    (loss_1, params_1, _), (loss_8, params_8, state_8) = results
    np.testing.assert_allclose(loss_8, loss_1, rtol=1e-5)
    assert loss_8[1] != loss_8[0]
    for a, b in zip(jax.tree.leaves(params_1), jax.tree.leaves(params_8), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    embed = state_8["params"]["conditioner"]["text_embed"]
    assert embed.sharding.spec == P(None, "fsdp")
    assert embed.addressable_shards[0].data.shape == (embed.shape[0], embed.shape[1] // 4)
