"""Optimizer and train state: schedule, weight-decay mask, the weights' moving average."""

import jax
import numpy as np
import optax
import pytest
from synthetic import (
    UNIT_SHAPE,
    device_batch,
    random_batch,
    train_setup,
    unit_config,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from jtts.config import OptimConfig
from jtts.optim import decay_mask, lr_schedule, make_optimizer

ROWS, FRAMES, TEXT = UNIT_SHAPE


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    sched = lr_schedule(cfg, 110)
    assert float(sched(0)) == 0.0 and float(sched(5)) == pytest.approx(0.5)
    assert float(sched(10)) == pytest.approx(1.0)
    assert float(sched(60)) == pytest.approx(0.55, abs=1e-3)
    assert float(sched(110)) == pytest.approx(0.1)
    flat = lr_schedule(OptimConfig(lr=1.0, warmup_steps=0, decay="constant"), 100)
    assert float(flat(50)) == 1.0


def test_weight_decay_skips_embeddings_and_norms():
    params = {
        "text_embed": 1.0,
        "code_embed": 1.0,
        "heads": 1.0,
        "decoder": {"layers": {0: {"mlp_norm": {"scale": 1.0}, "mlp": {"up": {"kernel": 1.0}}}}},
    }
    mask = decay_mask(params)
    assert not mask["text_embed"] and not mask["code_embed"] and mask["heads"]
    layer = mask["decoder"]["layers"][0]
    assert not layer["mlp_norm"]["scale"] and layer["mlp"]["up"]["kernel"]
    tx = make_optimizer(OptimConfig(clip_norm=0.0, weight_decay=0.5))
    p = {"text_embed": np.ones(2, np.float32), "heads": np.ones(2, np.float32)}
    zeros = jax.tree.map(np.zeros_like, p)
    updates, _ = tx.update(zeros, tx.init(p), p)
    out = optax.apply_updates(p, updates)
    assert (out["text_embed"] == 1).all() and (out["heads"] < 1).all()


def test_ema_follows_the_warmed_up_recurrence_of_the_params():
    """`ema` after each step equals d*ema + (1-d)*params with d = min(decay, (1+t)/(10+t)),
    computed in NumPy from the params the steps return; the raw params train as without it."""
    decay = 0.9
    mesh, step, state = train_setup(unit_config(f"optim.ema_decay={decay}"), jax.devices()[:1])
    _, plain_step, plain = train_setup(unit_config(), jax.devices()[:1])
    ema = jax.device_get(state["ema"])
    for t in range(4):
        batch = device_batch(mesh, random_batch(ROWS, FRAMES, TEXT, seed=20 + t))
        state, _ = step(state, batch)
        plain, _ = plain_step(plain, batch)
        d = min(decay, (1 + t) / (10 + t))
        params = jax.device_get(state["params"])
        ema = jax.tree.map(lambda e, p, d=d: d * e + (1 - d) * p, ema, params)
    got = jax.device_get(state["ema"])
    for want, have in zip(jax.tree.leaves(ema), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-7)
    for a, b in zip(
        jax.tree.leaves(jax.device_get(plain["params"])), jax.tree.leaves(params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert "ema" not in plain
    assert not np.allclose(got["heads"], params["heads"])  # an average, not a copy
    with pytest.raises(ValueError, match="optim.ema_decay"):
        OptimConfig(ema_decay=1.0)
