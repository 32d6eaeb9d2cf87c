"""The training loss: the length head's term, the phoneme head's and decoder input dropout."""

import jax
import numpy as np
import optax
from flax import nnx
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

from jtts.conditioning import Text
from jtts.loss import decoder_io, loss_sums
from jtts.model import Forward, build_model
from jtts.patterns import get_pattern
from jtts.train_step import EvalStep

ROWS, FRAMES, TEXT = UNIT_SHAPE


def test_the_length_head_trains_only_itself_and_learns_the_lengths():
    """`model.attention_prior` adds a length loss whose gradient reaches the length head
    alone (it reads the text encoding through a stop-gradient), and training on one batch
    brings the predicted frame counts to the true ones."""
    # Input dropout off: the text encoding the head reads would move with the reading it forces.
    cfg = unit_config("align.input_dropout=0", "optim.lr=3e-2", "optim.warmup_steps=1")
    assert cfg.model.attention_prior == 0.5
    host = jax.tree.map(np.asarray, random_batch(ROWS, FRAMES, TEXT))
    pattern = get_pattern(cfg.model.pattern, cfg.model.n_codebooks, cfg.model.codebook_size)
    model = build_model(cfg.model, nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)

    def length_loss(p):
        return loss_sums(nnx.merge(graphdef, p), host, pattern, cfg=cfg)["length"]

    # The forward's one text encoding gives the lengths decoding gets from its own.
    rows_B = host["valid"] & host["has_eos"]
    cond = host["cond"]
    text = Text(cond.text_BxS, cond.text_mask_BxS)
    frames_B = model.frames_of(model.encode_text(text), cond.text_mask_BxS)
    log_err_B = np.log1p(frames_B) - np.log1p(host["lengths"])
    np.testing.assert_allclose(length_loss(params), np.sum(log_err_B[rows_B] ** 2), rtol=1e-5)

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
    cfg = unit_config("align.input_dropout=0.6", "model.attention_prior=null")  # a bare stub
    pattern = get_pattern(cfg.model.pattern, cfg.model.n_codebooks, cfg.model.codebook_size)
    host = jax.tree.map(np.asarray, random_batch(ROWS, FRAMES, TEXT))
    seen = []

    class Stub:
        def forward(self, cond, inputs_BxKxS, **_):
            seen.append(np.asarray(inputs_BxKxS))
            b, k, s = inputs_BxKxS.shape
            return Forward(np.zeros((b, s, k, cfg.model.out_vocab_size), np.float32), None, None)

    model = Stub()

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


def test_the_phoneme_head_is_a_ctc_loss_on_the_text_encoding_and_learns_its_targets():
    """`loss_sums`' "pron" (`pron_sums`) is optax's CTC loss of each fitting row, unpadded,
    summed, and "pron_text" that of the text-only rows; their gradient reaches the text
    encoder and the head, never the decoder; training brings both down, logged apart."""
    cfg = unit_config(*PRON, "optim.lr=3e-2", "optim.warmup_steps=1")
    host = jax.tree.map(np.asarray, with_phones(random_batch(ROWS, FRAMES, TEXT), text_rows=4))
    pattern = get_pattern(cfg.model.pattern, cfg.model.n_codebooks, cfg.model.codebook_size)
    model = build_model(cfg.model, nnx.Rngs(0))
    got = loss_sums(model, host, pattern, cfg=cfg)
    text = host["pron_text"]
    encodings = {  # (the encoder's input, the targets) of the batch rows and the text-only rows
        "pron": (host["cond"].inputs["text"], host),
        "pron_text": (Text(text["ids"], text["mask"]), text),
    }
    want, labels = {}, {}
    for key, (inputs, rows) in encodings.items():
        logits = np.asarray(model.phoneme_logits(model.conditioner.encode_text(inputs)))
        want[key], labels[key] = 0.0, 0
        for j in np.flatnonzero(rows["phones_ok"]):
            n, phones = inputs.mask_BxS[j].sum(), rows["phones"][j]
            phones = phones[phones > 0]
            labels[key] += len(phones)
            want[key] += float(
                optax.ctc_loss(
                    logits[j : j + 1, :n],
                    np.zeros((1, n)),
                    phones[None],
                    np.zeros((1, len(phones))),
                )[0]
            )
        assert want[key] > 0 and abs(float(got[key]) - want[key]) < 1e-3 * want[key]

    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p):
        sums = loss_sums(nnx.merge(graphdef, p), host, pattern, cfg=cfg)
        return sums["pron"] + sums["pron_text"]

    grads = jax.tree_util.tree_flatten_with_path(jax.grad(loss)(params))[0]
    moved = {jax.tree_util.keystr(k) for k, g in grads if float(np.abs(g).max()) > 0}
    assert any("pron_head" in k for k in moved) and any("conditioner" in k for k in moved)
    assert not any("decoder" in k or "heads" in k or "code_embed" in k for k in moved), moved

    mesh, step, state = train_setup(cfg, jax.devices()[:1])
    batch = device_batch(mesh, host)
    losses = {"pron": [], "pron_text": []}
    for _ in range(40):
        state, metrics = step(state, batch)
        for key, values in losses.items():
            values.append(float(metrics[f"{key}_loss"]))
    for key, values in losses.items():
        # the first step's metric is the initial parameters' loss per phoneme of its rows
        np.testing.assert_allclose(values[0], want[key] / labels[key], rtol=1e-4)
        assert values[-1] < 0.5 * values[0], (key, values[::10])
    ev = EvalStep(cfg, step.graphdef, mesh, jax.tree.map(lambda x: x.sharding, state["params"]))
    sums = jax.device_get(ev(state["params"], batch))  # the recordings' rows alone
    assert sums["pron_labels"] == labels["pron"]
    assert sums["pron"] / labels["pron"] < 0.5 * losses["pron"][0]
