"""Alignment aids and measurements against NumPy/SciPy references, and a model that reads."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.stats
import yaml
from jax import numpy as jnp
from synthetic import make_spoken_store, make_store, subprocess_env, train_command

from codec_bridge.format import CodeStore, load_codes
from jtts import alignment
from jtts.config import AlignConfig, load_config
from jtts.rundir import RunDir
from jtts.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_beta_binomial_prior_is_scipy_betabinom():
    steps, tokens, scaling = np.array([7, 4]), np.array([3, 5]), 0.5
    log_prior = np.asarray(alignment.beta_binomial_log_prior(steps, tokens, 8, 6, scaling))
    assert log_prior.shape == (2, 8, 6)
    for b in range(2):
        n, t_max = tokens[b] - 1, steps[b]
        for t in range(1, t_max + 1):
            want = scipy.stats.betabinom.logpmf(
                np.arange(n + 1), n, scaling * t, scaling * (t_max - t + 1)
            )
            np.testing.assert_allclose(log_prior[b, t - 1, : n + 1], want, rtol=1e-4, atol=1e-4)
        assert (log_prior[b, t_max:] == 0).all() and (log_prior[b, :, n + 1 :] == 0).all()
    # A diagonal: early steps favour the first token, late ones the last.
    assert log_prior[0, 0, :3].argmax() == 0 and log_prior[0, 6, :3].argmax() == 2


def test_sampling_rows_of_the_prior_are_the_training_rows_then_stay_at_the_end():
    steps, tokens, scaling = np.array([7, 4]), np.array([3, 5]), 0.5
    full = np.asarray(alignment.beta_binomial_log_prior(steps, tokens, 7, 6, scaling))
    rows = np.asarray(alignment.log_prior_at(np.arange(10), steps, tokens, 6, scaling))
    assert rows.shape == (2, 10, 6)
    np.testing.assert_allclose(rows[0, :7], full[0], rtol=1e-6)
    np.testing.assert_allclose(rows[1, :4], full[1, :4], rtol=1e-6)
    for b, last in ((0, 6), (1, 3)):  # past the predicted length: the last step's row
        np.testing.assert_allclose(
            rows[b, last + 1 :], np.broadcast_to(rows[b, last], rows[b, last + 1 :].shape)
        )
        assert rows[b, last, : tokens[b]].argmax() == tokens[b] - 1


def test_prior_weight_schedule_and_bias():
    cfg = AlignConfig(prior=True, prior_hold_steps=10, prior_end_step=20)
    weights = [float(alignment.prior_weight(cfg, jnp.asarray(s))) for s in (0, 10, 15, 20, 99)]
    assert weights == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert float(alignment.prior_weight(AlignConfig(prior=False), jnp.asarray(0))) == 0.0
    lp = jnp.log(jnp.array([0.7, 0.2, 0.1]))
    np.testing.assert_allclose(alignment.prior_bias(lp, jnp.asarray(1.0)), lp, rtol=1e-6)
    np.testing.assert_allclose(alignment.prior_bias(lp, jnp.asarray(0.0)), 0.0, atol=1e-7)
    half = np.log(0.5 * np.array([0.7, 0.2, 0.1]) + 0.5)
    np.testing.assert_allclose(alignment.prior_bias(lp, jnp.asarray(0.5)), half, rtol=1e-6)


def _ctc_brute_force(logp_TxS: np.ndarray, blank: float) -> float:
    """-log of the summed probability of every blank/label path of length T that collapses
    to the labels 1..S: CTC written out by enumeration."""
    t, s = logp_TxS.shape
    classes = np.concatenate([np.full((t, 1), blank), logp_TxS], axis=1)
    classes = classes - np.log(np.exp(classes).sum(axis=1, keepdims=True))
    total = 0.0
    for path in itertools.product(range(s + 1), repeat=t):
        collapsed = [c for i, c in enumerate(path) if c and (i == 0 or path[i - 1] != c)]
        if collapsed == list(range(1, s + 1)):
            total += np.exp(sum(classes[i, c] for i, c in enumerate(path)))
    return -np.log(total)


def test_forward_sum_loss_is_ctc_over_monotonic_paths():
    rng = np.random.default_rng(0)
    logp = np.log(rng.dirichlet(np.ones(3), size=(1, 2, 5)))  # L=1, B=2, T=5, S=3
    text_mask = np.array([[True, True, True], [True, True, False]])
    step_mask = np.array([[True] * 5, [True, True, True, True, False]])
    total, rows = alignment.forward_sum_loss(
        jnp.asarray(logp, jnp.float32), step_mask, text_mask, np.array([True, True]), -1.0
    )
    want = _ctc_brute_force(logp[0, 0], -1.0) / 3 + _ctc_brute_force(logp[0, 1, :4, :2], -1.0) / 2
    assert float(rows) == 2
    np.testing.assert_allclose(float(total), want, rtol=1e-4)
    _, none = alignment.forward_sum_loss(
        jnp.asarray(logp, jnp.float32), step_mask, text_mask, np.array([False, False]), -1.0
    )
    assert float(none) == 0


def test_attention_sums_and_best_head_match_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 2, 6, 4)).astype(np.float32)  # L, B, H, T, S
    logits[1, :, 1] = np.where(np.arange(4)[None, None, :] == np.arange(6)[:, None] * 4 // 6, 9, 0)
    steps = np.arange(6)[None, :] < np.array([6, 4, 0])[:, None]  # row 2: a filler row
    text = np.arange(4)[None, :] < np.array([4, 4, 4])[:, None]
    sums = jax.device_get(alignment.attention_sums(jnp.asarray(logits), steps, text))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    for layer, head in itertools.product(range(2), range(2)):
        focus = monotone = coverage = 0.0
        for b in range(2):
            t = steps[b].sum()
            path = p[layer, b, head, :t].argmax(-1)
            focus += p[layer, b, head, :t].max(-1).sum()
            monotone += (np.diff(path) >= 0).sum()
            coverage += len(set(path.tolist())) / 4
        np.testing.assert_allclose(sums["focus"][layer, head], focus, rtol=1e-5)
        assert sums["monotone"][layer, head] == monotone
        np.testing.assert_allclose(sums["coverage"][layer, head], coverage, rtol=1e-5)
    assert (sums["steps"], sums["pairs"], sums["rows"]) == (10, 8, 2)
    best = alignment.best_head(sums)
    assert (best["layer"], best["head"]) == (1, 1)  # the planted diagonal
    # Row 0 visits all 4 tokens in its 6 steps, row 1 three in its 4 (0, 0, 1, 2).
    assert best["monotonicity"] == 1.0 and best["coverage"] == (1 + 3 / 4) / 2
    assert best["focus"] > 0.99


# A production config at the tiny config's size: only the shape and numerics that make it slow
# on CPU change, never the reading recipe (the prior, input dropout, front end) it carries.
TINY = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
AT_TINY_SIZE = [f"model.{k}={v}" for k, v in TINY["model"].items()] + [
    f"data.{k}={v}" for k, v in TINY["data"].items() if k != "val_fraction"
]
AT_TINY_SIZE += ["model.dtype=float32"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "small", "base", "large"])
def test_a_model_trained_on_text_determined_codes_reads_its_text(tmp_path, name):
    """Which word comes next only the text says: with the recipe every config carries (the kept
    prior, decoder input dropout), the held-out loss with a mismatched text is clearly worse
    than with the utterance's own after 100 steps. At the first evaluation (step 10) the same
    model has not learned to read yet and gains about nothing, so the measure is not positive
    by construction."""
    store = make_spoken_store(tmp_path / "store", 240)
    sets = [] if name == "tiny" else list(AT_TINY_SIZE)
    sets += ["train.steps=100", "data.batch_frames=1024", "data.val_fraction=0.1"]
    sets += ["optim.warmup_steps=20", "optim.lr=3e-3"]
    sets += ["eval.every=10", "eval.batches=2", "eval.num_samples=0", "checkpoint.every=100"]
    cfg = load_config(CONFIGS / f"{name}.yaml", [*sets, "log.tensorboard=false"])
    assert cfg.model.attention_prior is not None and cfg.align.input_dropout > 0
    if name != "tiny":  # and the open-vocabulary front end: bytes through convolutions, and
        # the phoneme head on their encoding
        assert cfg.model.text_units == "bytes" and cfg.model.text_conv_layers > 0
        assert cfg.model.pron_head
    assert Trainer(cfg, store, tmp_path / "run", progress=False).run() == 0
    rows = [json.loads(line) for line in RunDir(tmp_path / "run").metrics.open()]
    evals = {r["step"]: r for r in rows if "eval/text_gain" in r}
    assert abs(evals[10]["eval/text_gain_cb0"]) < 0.05
    assert evals[100]["eval/text_gain_cb0"] > 0.2
    assert evals[100]["eval/attn_coverage"] > 0.5


@pytest.mark.slow
def test_trainer_and_sampler_reproduce_memorized_utterances(tmp_path):
    """The real `jtts.train`, overfit to three utterances of distinct texts and 2 to 4 s, then
    the real `jtts.sample --greedy` with the run's default options: each text gives back its
    own utterance's codes and length, exactly. Input dropout (a training aid that hides the
    decoder's own past) is off: memorizing exactly is what is asked."""
    store = CodeStore.open(make_store(tmp_path / "store", 3, frames=(150, 300), structured=True))
    run = tmp_path / "run"
    sets = ["train.steps=200", "data.val_fraction=0", "optim.lr=3e-3", "optim.warmup_steps=20"]
    sets += ["checkpoint.every=200", "log.tensorboard=false", "align.input_dropout=0"]
    train = train_command(CONFIGS / "tiny.yaml", store.root, run, *sets)
    subprocess.run(train, check=True, env=subprocess_env(), capture_output=True)
    for i, utt in enumerate(store[j] for j in range(len(store))):
        out = tmp_path / f"{i}.npy"
        cmd = [sys.executable, "-m", "jtts.sample", "--workdir", str(run), "--text", utt.text]
        proc = subprocess.run(
            [*cmd, "--greedy", "--codes-out", str(out)],
            env=subprocess_env(),
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        codes, _ = load_codes(out)
        assert codes.shape == utt.codes.shape
        np.testing.assert_array_equal(codes, utt.codes)


def test_the_follow_window_weights_the_positions_around_the_reached_one():
    pos = np.array([[-1, 0, 3, 5]])
    got = np.asarray(alignment.follow_log_prior(jnp.asarray(pos), 6))
    floor = np.log(alignment.FOLLOW_FLOOR)
    want = np.full((1, 4, 6), floor, np.float32)
    want[0, 0] = 0.0  # no position known: no bias
    for t, p in enumerate(pos[0]):
        for offset, w in zip((-1, 0, 1, 2), alignment.FOLLOW_WEIGHTS, strict=True):
            if p >= 0 and 0 <= p + offset < 6:
                want[0, t, p + offset] = np.log(w)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def follow_reference(p_S, pos, dwell, length):
    """MagpieTTS's rule in plain Python: the most attended position from the reached one (or
    the next, after too long a dwell) over the window ahead, within the text."""
    if pos < 0:
        new = int(np.argmax(p_S[:length]))
    else:
        start = min(pos + (dwell >= alignment.FOLLOW_MAX_DWELL), length - 1)
        stop = min(start + len(alignment.FOLLOW_WEIGHTS) - 1, length)
        new = start + int(np.argmax(p_S[start:stop]))
    return new, dwell + 1 if new == pos else 0


def test_follow_position_takes_the_window_argmax_and_moves_past_a_sink():
    rng = np.random.default_rng(0)
    cases = [  # (pos, dwell, text length)
        (-1, 0, 9),
        (0, 0, 9),
        (4, 3, 9),
        (4, alignment.FOLLOW_MAX_DWELL, 9),
        (7, 0, 9),
        (8, alignment.FOLLOW_MAX_DWELL, 9),
        (2, 0, 5),
    ]
    for _ in range(20):
        logits = rng.normal(size=(2, len(cases), 3, 12)).astype(np.float32) * 3
        lengths = np.array([n for *_, n in cases])
        logits[..., 9:] = -1e9
        logits[:, lengths == 5, :, 5:] = -1e9
        pos, dwell = (np.array(x, np.int32) for x in list(zip(*cases, strict=True))[:2])
        got = alignment.follow_position(
            jnp.asarray(logits), jnp.asarray(pos), jnp.asarray(dwell), jnp.asarray(lengths)
        )
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p = (p / p.sum(-1, keepdims=True)).mean(axis=(0, 2))
        want = [follow_reference(p[b], *case) for b, case in enumerate(cases)]
        np.testing.assert_array_equal(np.asarray(got[0]), [w[0] for w in want])
        np.testing.assert_array_equal(np.asarray(got[1]), [w[1] for w in want])
        assert (np.asarray(got[0])[1:] >= pos[1:]).all()  # never behind
