"""Train and eval steps: one trace per shape, exact masking and weighting, accumulation,
non-finite guard, determinism, schedule and weight-decay mask."""

from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from synthetic import (
    UNIT_OVERRIDES,
    UNIT_SHAPE,
    device_batch,
    random_batch,
    train_setup,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from jtts.config import OptimConfig, apply_overrides, load_config
from jtts.patterns import get_pattern
from jtts.train_step import EvalStep, decay_mask, init_state, lr_schedule, make_optimizer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ROWS, FRAMES, TEXT = UNIT_SHAPE


def tiny(*overrides):
    return apply_overrides(load_config(CONFIGS / "tiny.yaml"), [*UNIT_OVERRIDES, *overrides])


@pytest.fixture(scope="module")
def setup():
    return train_setup(tiny(), jax.devices()[:1])


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


def test_eval_sums_count_exactly_the_unmasked_targets(setup):
    mesh, step, state = setup
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


def test_grad_accumulation_equals_the_full_batch(setup):
    mesh, step, _ = setup
    batch = device_batch(mesh, random_batch(ROWS, FRAMES, TEXT, seed=8))
    _, step2, state2 = train_setup(tiny("optim.grad_accum=2"), jax.devices()[:1])
    results = []
    for fn, state in ((step, fresh_state(setup)), (step2, state2)):
        for _ in range(2):
            state, m = fn(state, batch)
        results.append((float(m["loss"]), float(m["grad_norm"]), jax.device_get(state["params"])))
    (l1, g1, p1), (l2, g2, p2) = results
    np.testing.assert_allclose(l2, l1, rtol=1e-5)
    np.testing.assert_allclose(g2, g1, rtol=1e-4)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)  # Adam amplifies noise near 0


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


def test_the_length_head_trains_only_itself_and_learns_the_lengths():
    """`model.attention_prior` adds a length loss whose gradient reaches the length head
    alone (it reads the text encoding through a stop-gradient), and training on one batch
    brings the predicted frame counts to the true ones."""
    from jtts.model import build_model
    from jtts.train_step import length_sums

    cfg = tiny("model.attention_prior=0.5", "optim.lr=3e-2", "optim.warmup_steps=1")
    host = random_batch(ROWS, FRAMES, TEXT)
    model = build_model(cfg.model, nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)

    def length_loss(p):
        return length_sums(nnx.merge(graphdef, p), jax.tree.map(np.asarray, host))["length"]

    grads = jax.tree_util.tree_flatten_with_path(jax.grad(length_loss)(params))[0]
    moved = {jax.tree_util.keystr(k) for k, g in grads if float(np.abs(g).max()) > 0}
    assert moved and all("length_head" in k for k in moved), moved

    mesh, step, state = train_setup(cfg, jax.devices()[:1])
    batch = device_batch(mesh, host)
    errors = []
    for _ in range(60):
        state, metrics = step(state, batch)
        errors.append(float(metrics["length_loss"]))
    assert errors[-1] < 0.1 * errors[0], errors[::10]
    ev = EvalStep(cfg, step.graphdef, mesh, jax.tree.map(lambda x: x.sharding, state["params"]))
    sums = jax.device_get(ev(state["params"], batch))
    assert sums["length_rows"] == np.sum(host["valid"] & host["has_eos"])
    assert sums["length_abs_rel"] / sums["length_rows"] < 0.3


def test_input_dropout_replaces_that_share_of_decoder_steps_by_pad_but_never_bos():
    """`align.input_dropout` p: in training, each decoder input step (all codebooks at once)
    is PAD with probability p, step 0 keeps its BOS; without `corrupt_rng` (evaluation) the
    inputs are the teacher-forced ones."""
    from jtts.train_step import decoder_io, loss_sums

    cfg = tiny("align.input_dropout=0.6")
    pattern = get_pattern(cfg.model.pattern, cfg.model.n_codebooks, cfg.model.codebook_size)
    host = jax.tree.map(np.asarray, random_batch(ROWS, FRAMES, TEXT))
    seen = []

    def model(cond, inputs_BxKxS, **_):
        seen.append(np.asarray(inputs_BxKxS))
        b, k, s = inputs_BxKxS.shape
        return np.zeros((b, s, k, cfg.model.out_vocab_size), np.float32), None

    clean_BxKxS = np.asarray(decoder_io(host, pattern)[0])
    loss_sums(model, host, pattern, cfg=cfg)
    np.testing.assert_array_equal(seen[-1], clean_BxKxS)
    loss_sums(model, host, pattern, cfg=cfg, corrupt_rng=jax.random.key(3))
    changed_BxKxS = seen[-1] != clean_BxKxS
    padded_BxS = (seen[-1] == pattern.pad).all(axis=1)
    assert not padded_BxS[:, 0].any()
    assert (changed_BxKxS.any(axis=1) <= padded_BxS).all()  # a changed step is all PAD
    open_BxS = ~(clean_BxKxS == pattern.pad).all(axis=1)  # steps not PAD already
    open_BxS[:, 0] = False
    share = changed_BxKxS.any(axis=1)[open_BxS].mean()
    assert 0.5 < share < 0.7, share


def test_ema_follows_the_warmed_up_recurrence_of_the_params():
    """`ema` after each step equals d*ema + (1-d)*params with d = min(decay, (1+t)/(10+t)),
    computed in NumPy from the params the steps return; the raw params train as without it."""
    decay = 0.9
    mesh, step, state = train_setup(tiny(f"optim.ema_decay={decay}"), jax.devices()[:1])
    _, plain_step, plain = train_setup(tiny(), jax.devices()[:1])
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
