"""Train and eval steps: one trace per shape, exact masking and weighting, accumulation,
non-finite guard and determinism."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax import numpy as jnp
from synthetic import (
    PRON,
    UNIT_SHAPE,
    device_batch,
    random_batch,
    train_setup,
    unit_config,
    with_phones,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from jtts.optim import init_state
from jtts.patterns import get_pattern
from jtts.train_step import EvalStep

ROWS, FRAMES, TEXT = UNIT_SHAPE


@pytest.fixture(scope="module")
def setup():
    return train_setup(unit_config(), jax.devices()[:1])


def fresh_state(setup):
    _, step, state = setup
    return init_state(step.cfg, step.tx, jax.tree.map(lambda x: x.sharding, state))


def expected_counts(batch):
    """Targets per codebook under the delay pattern: every frame, plus EOS if the row has it."""
    per_row = (batch["lengths"] + batch["has_eos"]) * batch["valid"]
    return np.full(8, per_row.sum(), np.float64)


def test_one_trace_per_batch_shape(setup):
    mesh, step, _ = setup
    state = fresh_state(setup)
    before = step.traces
    for seed in range(3):
        state, _ = step(state, device_batch(mesh, random_batch(ROWS, FRAMES, TEXT, seed=seed)))
    assert step.traces - before <= 1
    traced = step.traces
    for seed in range(2):
        state, _ = step(state, device_batch(mesh, random_batch(ROWS, FRAMES, TEXT, seed=seed)))
    assert step.traces == traced and step._jitted._cache_size() == 1


def test_loss_metrics_follow_weights_masks_and_z_loss(setup):
    mesh, step, _ = setup
    batch = random_batch(ROWS, FRAMES, TEXT, seed=3)
    state, m = step(fresh_state(setup), device_batch(mesh, batch))
    m = jax.device_get(m)
    w = np.array([2, 1, 1, 1, 1, 1, 1, 0.5])
    # Equal target counts per codebook, so the weighted loss is the weighted mean.
    np.testing.assert_allclose(m["loss"], (w * m["loss_cb"]).sum() / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(m["loss_cb"], np.log(1025), rtol=0.02)  # near-uniform at init
    assert m["z_loss"] > 0 and m["finite"] and m["skipped"] == 0
    assert m["tokens"] == (batch["lengths"] * batch["valid"]).sum() * 8
    assert m["lr"] == 0.0 and int(state["step"]) == 1  # warmup starts at zero


def test_eval_sums_count_exactly_the_unmasked_targets():
    """The reference below is the bare forward pass: the model's prior is off here."""
    mesh, step, state = train_setup(unit_config("model.attention_prior=null"), jax.devices()[:1])
    batch = random_batch(ROWS, FRAMES, TEXT, seed=4)
    eval_step = EvalStep(
        step.cfg, step.graphdef, mesh, jax.tree.map(lambda x: x.sharding, state["params"])
    )
    sums = jax.device_get(eval_step(state["params"], device_batch(mesh, batch)))
    np.testing.assert_array_equal(sums["count"], expected_counts(batch))

    # Reference: the model's logits and numpy masks built from the pattern by hand.
    pattern = get_pattern("delay", 8, 1024)
    seq = pattern.apply(batch["codes"], batch["lengths"])
    inputs, targets, mask = pattern.decoder_io(seq)
    mask &= batch["valid"][:, None, None]
    mask &= ~((targets == pattern.eos) & ~batch["has_eos"][:, None, None])
    model = nnx.merge(step.graphdef, state["params"])
    logits = np.asarray(model(batch["cond"], inputs)[0], np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, targets.transpose(0, 2, 1)[..., None], -1)[..., 0]
    ce = (nll * mask.transpose(0, 2, 1)).sum(axis=(0, 1))
    np.testing.assert_allclose(sums["ce"], ce, rtol=1e-4)
    assert eval_step.traces == 1


def test_nonfinite_step_is_not_applied_and_counted(setup):
    mesh, step, _ = setup
    state = fresh_state(setup)
    state, _ = step(state, device_batch(mesh, random_batch(ROWS, FRAMES, TEXT, seed=5)))
    before = jax.device_get(state)
    bad = random_batch(ROWS, FRAMES, TEXT, seed=6)
    bad["cond"].text_BxS[0, 0] = 10**7  # out-of-range id: jnp.take fills NaN
    state, m = step(state, device_batch(mesh, bad))
    after = jax.device_get(state)
    assert not m["finite"] and int(m["skipped"]) == 1 and int(after["step"]) == 2
    for a, b in zip(
        jax.tree.leaves(before["params"]), jax.tree.leaves(after["params"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree.leaves(before["opt_state"]), jax.tree.leaves(after["opt_state"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_same_seed_same_losses_and_cond_drop_is_random_per_step(setup):
    """Two runs from one seed agree bit for bit; with the step's cond-drop mask the loss of
    one batch differs from step to step even without an update (lr is 0 at step 0)."""
    mesh, step, _ = setup
    batch = device_batch(mesh, random_batch(ROWS, FRAMES, TEXT, seed=7))
    runs = []
    for _ in range(2):
        state, losses = fresh_state(setup), []
        for _ in range(3):
            state, m = step(state, batch)
            losses.append(float(m["loss"]))
        runs.append(losses)
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[0][1]  # same params (lr 0 at step 0), other cond-drop mask


@pytest.mark.parametrize(
    "head, text_rows", [((), 0), (PRON, 0), (PRON, 4)], ids=["codes", "phoneme_head", "text_rows"]
)
def test_grad_accumulation_equals_the_full_batch(head, text_rows):
    """Input dropout off: half batches draw other random masks than the whole one. With the
    phoneme head its loss is normalised by the whole batch's phonemes too, text-only rows'
    included."""
    mesh, step, state1 = train_setup(unit_config("align.input_dropout=0", *head), jax.devices()[:1])
    host = random_batch(ROWS, FRAMES, TEXT, seed=8)
    batch = device_batch(mesh, with_phones(host, text_rows=text_rows) if head else host)
    _, step2, state2 = train_setup(
        unit_config("align.input_dropout=0", "optim.grad_accum=2", *head), jax.devices()[:1]
    )
    results = []
    for fn, state in ((step, state1), (step2, state2)):
        for _ in range(2):
            state, m = fn(state, batch)
        results.append((float(m["loss"]), float(m["grad_norm"]), jax.device_get(state["params"])))
    (l1, g1, p1), (l2, g2, p2) = results
    np.testing.assert_allclose(l2, l1, rtol=1e-5)
    np.testing.assert_allclose(g2, g1, rtol=1e-4)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)  # Adam amplifies noise near 0


def test_empty_text_rows_change_nothing_and_log_no_loss():
    """A batch whose text no line of `data.pron_text` fits carries empty text-only rows
    (`jtts.pron_text`): its step is the step without them, and no text-rows loss is logged
    (NaN, which reporting drops) instead of a perfect 0."""
    cfg = unit_config("align.input_dropout=0", *PRON)
    mesh, step, state = train_setup(cfg, jax.devices()[:1])
    host = with_phones(random_batch(ROWS, FRAMES, TEXT, seed=8), text_rows=4)
    empty = {k: np.zeros_like(v) for k, v in host["pron_text"].items()}
    results = []
    for rows in (None, empty):
        batch = {k: v for k, v in host.items() if k != "pron_text"}
        batch = device_batch(mesh, batch if rows is None else {**batch, "pron_text": rows})
        new_state, m = step(jax.tree.map(jnp.copy, state), batch)
        results.append((m, jax.device_get(new_state["params"])))
    (m0, p0), (m1, p1) = results
    assert np.isfinite(float(m1["loss"])) and np.isnan(float(m1["pron_text_loss"]))
    np.testing.assert_allclose(float(m1["loss"]), float(m0["loss"]), rtol=1e-6)
    np.testing.assert_allclose(float(m1["pron_loss"]), float(m0["pron_loss"]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(p0), jax.tree.leaves(p1), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
