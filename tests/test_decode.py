"""The compiled decode loop against its references (`jtts.decode_reference`), its prior, its EOS
bookkeeping and its voice prompt."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from flax import nnx
from jax import numpy as jnp

from jtts import decode, decode_io
from jtts.conditioning import TEXT
from jtts.config import load_config
from jtts.decode_io import Generation
from jtts.decode_reference import generate_naive, generate_stepwise
from jtts.model import build_model
from jtts.patterns import get_pattern
from jtts.sampling import Sampling, Spec, cond_rows

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TEXTS = [[5, 17, 3, 99, 42, 7, 250, 11, 30], [300, 2], [8, 9, 10, 11, 12]]
GREEDY = Sampling(greedy=True)


def small_cfg(**over):
    """tiny.yaml with fewer layers, codes and text ids: quick to compile."""
    tiny = load_config(CONFIGS / "tiny.yaml").model
    shape = dict(enc_layers=1, dec_layers=2, text_vocab_size=512, codebook_size=64)
    return dataclasses.replace(tiny, n_codebooks=4, max_text_len=16, max_frames=64, **shape, **over)


@pytest.fixture(scope="module")
def model():
    return build_model(small_cfg(), nnx.Rngs(0))


def fixed(frames: int, **kw) -> Sampling:
    """Sampling that may not stop before `frames`: runs exactly that many frames."""
    return Sampling(min_frames=frames, **kw)


def assert_same_codes(a: Generation, b: Generation) -> None:
    assert len(a.codes) == len(b.codes)
    for x, y in zip(a.codes, b.codes, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_compiled_loop_matches_python_loop_and_no_cache_reference(model, cfg_scale):
    sampling = dataclasses.replace(GREEDY, cfg_scale=cfg_scale)
    compiled = decode.generate(model, TEXTS, sampling, max_frames=12)
    assert_same_codes(compiled, generate_stepwise(model, TEXTS, sampling, max_frames=12))
    assert_same_codes(compiled, generate_naive(model, TEXTS, sampling, max_frames=12))
    assert all(c.shape[0] == 4 and 1 <= c.shape[1] <= 12 for c in compiled.codes)


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
def test_a_models_own_prior_is_spread_alike_by_all_three_decoders(cfg_scale):
    """The prior rows the compiled loop adds step by step equal those the no-cache reference
    adds to its full forward; and they matter: the same weights without the prior differ."""
    sampling = dataclasses.replace(fixed(12, greedy=True), cfg_scale=cfg_scale)
    with_prior = build_model(small_cfg(attention_prior=0.05), nnx.Rngs(0))
    compiled = decode.generate(with_prior, TEXTS, sampling, max_frames=12)
    assert_same_codes(compiled, generate_stepwise(with_prior, TEXTS, sampling, 12))
    assert_same_codes(compiled, generate_naive(with_prior, TEXTS, sampling, 12))
    plain = decode.generate(build_model(small_cfg(), nnx.Rngs(0)), TEXTS, sampling, 12)
    assert not all(np.array_equal(a, b) for a, b in zip(compiled.codes, plain.codes, strict=True))


def test_length_scale_spreads_the_prior_over_the_predicted_length_times_it():
    """The prior's length in decoder steps is the length head's prediction times the scale,
    through the pattern's frames-to-steps map; all three decoders apply it alike."""
    with_prior = build_model(small_cfg(attention_prior=0.05), nnx.Rngs(0))
    cond = decode_io._batch(TEXTS, with_prior.cfg.max_text_len).cond
    text_BxSxD = with_prior.encode_text(cond.inputs[TEXT])
    frames = np.asarray(with_prior.frames_of(text_BxSxD, cond.text_mask_BxS))
    pattern = get_pattern("delay", 4, 64)
    for scale in (1.0, 2.5):
        spec = Spec.of(with_prior, Sampling(length_scale=scale, cfg_scale=2.0))
        expected = pattern.num_steps(np.maximum(np.round(frames * scale), 1).astype(np.int32))
        # Guidance's null rows are spread over the length of their text, like their own rows.
        guided = cond_rows(spec, cond)
        got = with_prior.decode_context(guided, length_scale=scale).prior.steps_B
        np.testing.assert_array_equal(np.asarray(got), np.concatenate([expected, expected]))
    sampling = fixed(12, greedy=True, length_scale=2.5)
    stretched = decode.generate(with_prior, TEXTS, sampling, max_frames=12)
    assert_same_codes(stretched, generate_stepwise(with_prior, TEXTS, sampling, 12))
    assert_same_codes(stretched, generate_naive(with_prior, TEXTS, sampling, 12))
    plain = decode.generate(with_prior, TEXTS, fixed(12, greedy=True), max_frames=12)
    pairs = zip(stretched.codes, plain.codes, strict=True)
    assert not all(np.array_equal(a, b) for a, b in pairs)


def test_batch_rows_equal_rows_alone(model):
    batch = decode.generate(model, TEXTS, GREEDY, max_frames=16)
    for ids, codes in zip(TEXTS, batch.codes, strict=True):
        np.testing.assert_array_equal(decode.generate(model, [ids], GREEDY, 16).codes[0], codes)


def test_compiled_programs_are_reused(model):
    decode.generate(model, TEXTS, GREEDY, max_frames=16)
    again = decode.generate(model, [[1, 2], [3], [4, 5, 6]], GREEDY, max_frames=15)
    assert again.compile_s == 0.0  # same batch, text and step buckets
    unguided = dataclasses.replace(GREEDY, cfg_null="text")  # no guidance: nothing to drop
    assert decode.generate(model, TEXTS, unguided, max_frames=16).compile_s == 0.0


# A hand-built model whose greedy output is known: codebook 0 counts up by one per frame from
# a start code chosen by the text token, and code C-1 is followed by EOS, so text [t] gives
# exactly C - start[t] frames. Codebook 1 is 3 * codebook 0 (mod C). Every residual branch is
# zeroed except cross-attention, which (with zero queries) adds the text's one-hot embedding.
C, K = 16, 2
TEXT_DIM = K * (C + 3)  # first embedding dim of text features, after the code one-hots


def counter_model(starts: dict[int, int], *, eos: bool = True):
    cfg = dataclasses.replace(
        small_cfg(),
        n_codebooks=K,
        codebook_size=C,
        text_vocab_size=64 - TEXT_DIM,
        mlp_dim=64,
    )
    m = build_model(cfg, nnx.Rngs(0))
    d, vocab = cfg.d_model, cfg.text_vocab_size
    m.conditioner.text_embed[...] = jnp.eye(vocab, d, TEXT_DIM)
    embed = np.zeros((K, C + 3, d), np.float32)
    for k in range(K):
        embed[k, :, k * (C + 3) : (k + 1) * (C + 3)] = np.eye(C + 3)
    m.code_embed[...] = jnp.asarray(embed)
    for layer in m.conditioner.encoder.layers:
        layer.attn.o.kernel[...] = jnp.zeros_like(layer.attn.o.kernel[...])
        layer.mlp.down.kernel[...] = jnp.zeros_like(layer.mlp.down.kernel[...])
    for layer in m.decoder.layers:
        for p in (layer.self_attn.o.kernel, layer.mlp.down.kernel, layer.cross_attn.q.kernel):
            p[...] = jnp.zeros_like(p[...])
        layer.cross_attn.kv.kernel[...] = jnp.concatenate([jnp.eye(d), jnp.eye(d)], axis=1)
        layer.cross_attn.o.kernel[...] = jnp.eye(d)
    heads = np.zeros((d, K, C + 1), np.float32)
    for c in range(C - 1):
        heads[c, 0, c + 1] = 100.0
    heads[C - 1, 0, C if eos else 0] = 100.0
    for t, start in starts.items():
        heads[TEXT_DIM + t, 0, start] = 1.0  # wins only at step 0, where the input is BOS
    for c in range(C):
        heads[c, 1, (3 * c) % C] = 100.0
    m.heads[...] = jnp.asarray(heads)
    return m


def counter_codes(start: int) -> np.ndarray:
    first = np.arange(start, C)
    return np.stack([first, (3 * first) % C])


def test_rows_stop_independently():
    m = counter_model({1: 12, 2: 4})
    g = decode.generate(m, [[1], [2]], GREEDY, max_frames=40)
    assert g.finished.tolist() == [True, True]
    assert [c.shape[1] for c in g.codes] == [4, 12]
    for codes, start in zip(g.codes, (12, 4), strict=True):
        np.testing.assert_array_equal(codes, counter_codes(start))
    assert g.steps == 12 + K  # ends with the long row's EOS on the last codebook
    pattern = get_pattern("delay", K, C)
    padded = np.zeros((2, K, 12), np.int32)
    padded[0, :, :4], padded[1] = counter_codes(12), counter_codes(4)
    expected = pattern.apply(padded, np.array([4, 12]))  # BOS, codes, EOS, then PAD
    np.testing.assert_array_equal(g.seq_BxKxS, expected)


def test_no_eos_at_step_zero_and_min_frames():
    m = counter_model({1: C})  # the text asks for EOS first: masked, so the count starts at 0
    g = decode.generate(m, [[1]], GREEDY, max_frames=40)
    np.testing.assert_array_equal(g.codes[0], counter_codes(0))
    m = counter_model({1: C - 1})  # EOS due after one frame; min_frames defers it
    assert decode.generate(m, [[1]], GREEDY, max_frames=40).codes[0].shape[1] == 1
    held = decode.generate(m, [[1]], dataclasses.replace(GREEDY, min_frames=3), 40)
    assert held.codes[0].shape[1] == 3


def test_max_frames_caps_a_model_without_eos():
    m = counter_model({1: 3, 2: 5}, eos=False)
    g = decode.generate(m, [[1], [2]], GREEDY, max_frames=20)
    assert g.finished.tolist() == [False, False]
    assert g.steps == 20 + K
    for codes, start in zip(g.codes, (3, 5), strict=True):
        assert codes.shape == (K, 20)
        np.testing.assert_array_equal(codes[0], (start + np.arange(20)) % C)


PROMPT = np.random.default_rng(0).integers(0, 64, size=(4, 5))  # 5 frames of small_cfg codes


@pytest.mark.parametrize(("prior", "cfg_scale"), [(None, 1.0), (None, 3.0), (0.05, 3.0)])
def test_a_prefilled_prompt_equals_the_teacher_forced_reference(prior, cfg_scale):
    """The compiled loop prefills the prompt's steps in one `extend`; the no-cache reference
    never prefills, re-running the full forward over prompt + continuation at every step (with
    the model's own alignment prior over the prompt's steps too)."""
    model = build_model(small_cfg(attention_prior=prior), nnx.Rngs(0))
    sampling = dataclasses.replace(fixed(8, greedy=True), cfg_scale=cfg_scale)
    compiled = decode.generate(model, TEXTS, sampling, 8, prompt=PROMPT)
    assert_same_codes(compiled, generate_stepwise(model, TEXTS, sampling, 8, prompt=PROMPT))
    assert_same_codes(compiled, generate_naive(model, TEXTS, sampling, 8, prompt=PROMPT))
    assert all(c.shape == (4, 8) for c in compiled.codes)  # the continuation only


def test_prompts_of_nearby_lengths_share_a_program_and_equal_the_reference(model):
    """9 and 7 frames (prefixes of 12 and 10 steps) prefill one bucket of 64 steps: the second
    compiles nothing, and both still equal the no-cache reference, which never pads."""
    sampling = fixed(8, greedy=True, cfg_scale=3.0)
    longer, shorter = np.random.default_rng(1).integers(0, 64, size=(2, 4, 9))
    shorter = shorter[:, :7]  # a length no other test decodes
    first = decode.generate(model, TEXTS, sampling, 8, prompt=longer)
    second = decode.generate(model, TEXTS, sampling, 8, prompt=shorter)
    assert second.compile_s == 0.0
    for prompt, g in ((longer, first), (shorter, second)):
        assert_same_codes(g, generate_naive(model, TEXTS, sampling, 8, prompt=prompt))


def test_a_prompt_changes_the_output_and_the_same_prompt_repeats_it(model):
    sampling = fixed(8, greedy=True)
    plain = decode.generate(model, TEXTS, sampling, 8)
    first = decode.generate(model, TEXTS, sampling, 8, prompt=PROMPT)
    other = decode.generate(model, TEXTS, sampling, 8, prompt=(PROMPT + 1) % 64)
    assert_same_codes(first, decode.generate(model, TEXTS, sampling, 8, prompt=PROMPT))
    for a, b in ((first, plain), (first, other)):
        assert not any(np.array_equal(x, y) for x, y in zip(a.codes, b.codes, strict=True))


def test_the_prompt_keeps_the_codes_the_delay_pattern_fixes():
    """The counter model continues codebook 0 from the prompt's last code. Its codebook 1 would
    be 3x codebook 0, but in the K-1 steps after the prompt the prompt's own codebook-1 codes
    are emitted: every frame < P reverts to the prompt, and the continuation follows it."""
    m = counter_model({1: C - 2})  # held back from EOS, it says C-2 again
    prompt = np.array([[3, 4, 5], [1, 2, 7]])  # 7 != 3 * 5 % 16: the model would say 15
    g = decode.generate(m, [[1]], GREEDY, max_frames=40, prompt=prompt)
    codes, length = get_pattern("delay", K, C).revert(g.seq_BxKxS)
    np.testing.assert_array_equal(codes[0, :, :3], prompt)
    np.testing.assert_array_equal(g.codes[0], counter_codes(6))
    assert length[0] == 3 + C - 6 and g.finished.tolist() == [True]
    # min_frames counts the continuation: after a prompt ending at C-2, EOS is due at once
    held = dataclasses.replace(GREEDY, min_frames=3)
    end = np.array([[C - 2], [0]])
    assert decode.generate(m, [[1]], GREEDY, 40, prompt=end).codes[0].shape[1] == 1
    assert decode.generate(m, [[1]], held, 40, prompt=end).codes[0].shape[1] == 3


@pytest.mark.parametrize(
    ("prior", "cfg_scale", "prompt"), [(None, 1.0, None), (0.05, 3.0, None), (0.05, 3.0, PROMPT)]
)
def test_following_the_attention_is_alike_in_all_three_decoders_and_matters(
    prior, cfg_scale, prompt
):
    """The reached positions the compiled loop carries from step to step equal those the
    no-cache reference reads off its full forward, and the window changes what is said."""
    model = build_model(small_cfg(attention_prior=prior), nnx.Rngs(0))
    plain = dataclasses.replace(fixed(12, greedy=True), cfg_scale=cfg_scale)
    following = dataclasses.replace(plain, follow=True)
    compiled = decode.generate(model, TEXTS, following, 12, prompt=prompt)
    assert_same_codes(compiled, generate_stepwise(model, TEXTS, following, 12, prompt=prompt))
    assert_same_codes(compiled, generate_naive(model, TEXTS, following, 12, prompt=prompt))
    unfollowed = decode.generate(model, TEXTS, plain, 12, prompt=prompt)
    pairs = zip(compiled.codes, unfollowed.codes, strict=True)
    assert not all(np.array_equal(a, b) for a, b in pairs)


def test_the_reached_position_never_goes_back_and_stays_in_the_text():
    model = build_model(small_cfg(attention_prior=0.05), nnx.Rngs(1))
    r = decode_io.request(model, TEXTS, fixed(40, greedy=True, follow=True), 40, None, None)
    ctx, cache, loop = decode.prepare(model, r.spec, r.cache_steps, *r.batch)
    for _ in range(40):
        loop, cache = decode.advance(model, r.spec, r.knobs, ctx, loop, cache)
    path = np.asarray(loop.path_BxS)[: len(TEXTS), 1:41]
    assert (np.asarray(decode.init_loop(r.spec, r.batch.valid_B, 8).path_BxS) == -1).all()
    assert (path >= 0).all() and (np.diff(path, axis=1) >= 0).all()
    assert (path < np.array([len(t) for t in TEXTS])[:, None]).all()
    assert (path[:, -1] > path[:, 0]).any()  # it moves on


def test_a_followed_decode_ends_only_at_the_end_of_its_text():
    """The counter model asks for EOS after 4 frames whatever its text says. Following the
    attention, a one-token text may end there, but a longer one not before its position has
    reached the text's last tokens: the count runs on past the EOS it wanted."""
    m = counter_model({1: 12})
    follow = dataclasses.replace(GREEDY, follow=True)
    assert decode.generate(m, [[1]], follow, max_frames=40).codes[0].shape[1] == 4
    long_text = [[1, 3, 3, 3, 3, 3, 3]]
    assert decode.generate(m, long_text, GREEDY, max_frames=40).codes[0].shape[1] == 4
    followed = decode.generate(m, long_text, follow, max_frames=40)
    assert followed.codes[0].shape[1] > 4
    np.testing.assert_array_equal(followed.codes[0][0, :4], [12, 13, 14, 15])
    assert_same_codes(followed, generate_naive(m, long_text, follow, max_frames=40))
