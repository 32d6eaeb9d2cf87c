"""Conditioning attributes: per-attribute dropout and mismatching, the fuser's joins, the tables
of names, and a speaker end to end (store -> training -> config -> `jtts.sample --speaker`)."""

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from jax import numpy as jnp
from synthetic import (
    SPEAKERS,
    make_two_speaker_store,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from codec_bridge.format import CodeStore
from jtts import conditioning, decode, sample, sampler, trained_run
from jtts.conditioning import Cond
from jtts.config import ConditionConfig, ConfigError, load_config
from jtts.decode_io import request
from jtts.decode_reference import forward_logits, generate_naive, generate_stepwise
from jtts.model import build_model
from jtts.rundir import RunDir
from jtts.sampling import Sampling
from jtts.trainer import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SPEAKER = "model.conditions=[{name: speaker, drop_prob: 0.5, values: [alice, bob, carol]}]"


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIGS / "tiny.yaml", [SPEAKER]).model


def batch(rows=6, seed=0):
    rng = np.random.default_rng(seed)
    text = jnp.asarray(rng.integers(1, 1000, (rows, 5)), jnp.int32)
    speaker = jnp.asarray(rng.integers(0, 3, rows), jnp.int32)
    return Cond.of_text(text, jnp.ones((rows, 5), bool), speaker=speaker)


def test_each_attribute_drops_with_its_own_probability(cfg):
    cond = batch(rows=4096)
    only_speaker = conditioning.guidance_dropout(
        cond, dataclasses.replace(cfg, cond_drop_prob=0.0), jax.random.key(0)
    )
    assert (
        not only_speaker.dropped["text"].any()
        and 0.45 < only_speaker.dropped["speaker"].mean() < 0.55
    )
    c = dataclasses.replace(cfg.conditions[0], drop_prob=0.0)
    only_text = conditioning.guidance_dropout(
        cond, dataclasses.replace(cfg, cond_drop_prob=0.5, conditions=(c,)), jax.random.key(0)
    )
    assert not only_text.dropped["speaker"].any() and 0.45 < only_text.dropped["text"].mean() < 0.55
    both = conditioning.guidance_dropout(
        cond, dataclasses.replace(cfg, cond_drop_prob=0.5), jax.random.key(0)
    )
    together = float((both.dropped["text"] & both.dropped["speaker"]).mean())
    assert 0.2 < together < 0.3  # independent draws: a quarter of the rows lose both
    null = conditioning.with_null_rows(cond)
    assert all(bool((v == (jnp.arange(8192) >= 4096)).all()) for v in null.dropped.values())


def test_text_only_null_rows_keep_the_speaker():
    """Guidance with `cfg_null="text"`: the null rows lose the text and keep each row's own
    speaker, dropped where the conditional row's is."""
    cond = conditioning.drop(batch(), jnp.arange(6) == 2, ("speaker",))
    null = conditioning.with_null_rows(cond, (conditioning.TEXT,))
    np.testing.assert_array_equal(null.dropped["text"], np.arange(12) >= 6)
    np.testing.assert_array_equal(null.dropped["speaker"], np.arange(12) % 6 == 2)
    np.testing.assert_array_equal(null.inputs["speaker"][6:], cond.inputs["speaker"])


def test_mismatched_swaps_only_its_attribute():
    cond = batch()
    valid = jnp.array([True, True, False, True, True, False])
    partner = np.array([1, 3, 2, 4, 0, 5])  # next valid row, cyclically; invalid rows keep theirs
    swapped = conditioning.mismatched(cond, valid, "speaker")
    np.testing.assert_array_equal(
        swapped.inputs["speaker"], np.asarray(cond.inputs["speaker"])[partner]
    )
    np.testing.assert_array_equal(swapped.text_BxS, cond.text_BxS)
    text_swapped = conditioning.mismatched(cond, valid)
    np.testing.assert_array_equal(text_swapped.text_BxS, np.asarray(cond.text_BxS)[partner])
    np.testing.assert_array_equal(text_swapped.inputs["speaker"], cond.inputs["speaker"])


def test_the_speaker_joins_as_a_sum_into_every_decoder_input(cfg):
    model = build_model(cfg, nnx.Rngs(0))
    cond = conditioning.drop(batch(rows=3), jnp.array([False, True, False]), ("speaker",))
    mem = model.conditioner(cond)
    table = model.conditioner.speaker.table[...]
    want = np.asarray(table)[np.asarray(cond.inputs["speaker"])]
    want[1] = model.conditioner.speaker.null_cond[...]
    np.testing.assert_allclose(mem.input_BxD, want, atol=1e-6)
    plain = model.conditioner.encode_text(cond.inputs["text"])
    np.testing.assert_allclose(mem.enc_BxSxD, plain, atol=1e-6)  # the text memory is the text's
    tokens = jnp.zeros((3, cfg.n_codebooks, 4), jnp.int32)
    logits = model(cond, tokens)[0]
    other = cond._replace(inputs={**cond.inputs, "speaker": (cond.inputs["speaker"] + 1) % 3})
    moved = model(other, tokens)[0]
    assert np.abs(logits[0] - moved[0]).max() > 1e-4  # a speaker changes every step's logits
    np.testing.assert_allclose(logits[1], moved[1], atol=1e-6)  # a dropped one is its null


def test_text_convolutions_see_their_kernel_of_neighbours_and_never_padding():
    cfg = load_config(
        CONFIGS / "tiny.yaml", ["model.text_conv_layers=2", "model.text_conv_kernel=3"]
    )
    model = build_model(cfg.model, nnx.Rngs(0))
    block = model.conditioner.text_conv[0]
    x = jax.random.normal(jax.random.key(1), (1, 8, cfg.model.d_model))
    mask = jnp.arange(8)[None] < 6  # positions 6 and 7 are padding
    out = block(x, mask)
    np.testing.assert_array_equal(out[0, 6:], x[0, 6:])  # padding passes through untouched
    noisy = block(x.at[0, 6:].add(5.0), mask)
    np.testing.assert_allclose(noisy[0, :6], out[0, :6], atol=1e-6)  # and never leaks
    moved = np.abs(block(x.at[0, 3].add(1.0), mask) - out)[0].max(axis=-1)
    assert (moved[[2, 3, 4]] > 1e-4).all()  # a kernel of 3 reaches one neighbour each side
    np.testing.assert_allclose(moved[[0, 1, 5]], 0, atol=1e-6)
    text = batch(rows=2).inputs["text"]
    plain = model.conditioner.encode_text(text)
    model.conditioner.text_conv[1].conv.kernel[...] *= 0  # the second block takes part too
    assert np.abs(model.conditioner.encode_text(text) - plain).max() > 1e-4


@pytest.mark.parametrize(("cfg_scale", "cfg_null"), [(1.0, "all"), (3.0, "all"), (3.0, "text")])
def test_the_three_decoders_agree_with_a_speaker(cfg, cfg_scale, cfg_null):
    model = build_model(cfg, nnx.Rngs(1))
    texts, speakers = [[5, 6, 7, 50257], [9, 50257]], {"speaker": [2, conditioning.NULL]}
    s = Sampling(greedy=True, cfg_scale=cfg_scale, cfg_null=cfg_null)
    compiled = decode.generate(model, texts, s, 10, speakers)
    for other in (generate_stepwise, generate_naive):
        got = other(model, texts, s, 10, speakers)
        for a, b in zip(compiled.codes, got.codes, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="reads \\['speaker'\\] besides the text, given none"):
        decode.generate(model, texts, s, 10)


def test_text_only_guidance_mixes_against_the_speakers_own_null(cfg):
    """The decoders' null rows are the condition without its text (`cfg_null="text"`: the
    speaker kept) or without anything ("all"): checked against plain forward passes of
    conditions dropped by hand (the alignment prior's bias, of the row's text, in both)."""
    model = build_model(cfg, nnx.Rngs(1))
    first = {}
    for cfg_null, names in (("text", ("text",)), ("all", None)):
        s = Sampling(greedy=True, cfg_scale=3.0, cfg_null=cfg_null)
        r = request(model, [[5, 6, 7, 50257]], s, 4, {"speaker": [2]}, None)
        cond, b = r.batch.cond, r.batch.cond.drop_B.shape[0]
        loop = decode.init_loop(r.spec, jnp.asarray(r.batch.valid_B), r.cache_steps)
        logits, _ = forward_logits(r.graphdef, 1, r.spec, r.state, cond, loop)
        bos = jnp.full((b, cfg.n_codebooks, 1), model.pattern.bos, jnp.int32)
        bias = model.prior_bias(model.prior(cond), jnp.arange(1), cond.text_BxS.shape[1])
        null = conditioning.drop(cond, jnp.ones(b, bool), names)
        for n, c in (("cond", cond), (cfg_null, null)):
            first[n] = model(c, bos, attn_bias_BxTxS=bias)[0][:, 0]
        np.testing.assert_allclose(logits[:b], first["cond"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(logits[b:], first[cfg_null], rtol=1e-5, atol=1e-5)
    assert np.abs(first["text"] - first["all"]).max() > 1e-3


def test_the_null_id_decodes_with_the_learned_null(cfg):
    """conditioning.NULL in a decode batch is the row guidance dropout trains: the speaker's
    null vector joins the decoder input, the table's row 0 does not."""
    from jtts.decode_io import _batch

    model = build_model(cfg, nnx.Rngs(1))
    batch = _batch(
        [[5, 6, 50257], [9, 50257]], cfg.max_text_len, {"speaker": [conditioning.NULL, 1]}
    )
    np.testing.assert_array_equal(batch.cond.dropped["speaker"][:2], [True, False])
    assert not batch.cond.dropped["text"].any() and batch.cond.inputs["speaker"].min() >= 0
    plain = _batch([[5, 6, 50257], [9, 50257]], cfg.max_text_len, {"speaker": [0, 1]}).cond
    want = conditioning.drop(plain, np.arange(len(plain.drop_B)) == 0, ("speaker",))
    got, ref = model.conditioner(batch.cond), model.conditioner(want)
    np.testing.assert_allclose(got.input_BxD, ref.input_BxD)
    speaker = model.conditioner.speaker
    np.testing.assert_allclose(got.input_BxD[0], speaker.null_cond[...], rtol=1e-6)
    np.testing.assert_allclose(got.input_BxD[1], speaker.table[...][1], rtol=1e-6)


def test_a_voice_prompt_stands_in_for_the_speaker(cfg):
    full = load_config(CONFIGS / "tiny.yaml", [SPEAKER])
    where = Path("run")
    assert trained_run.choose_categories(full, {"prompt_wav": "ref.wav"}, where) == {
        "speaker": conditioning.NULL
    }
    chosen = {"prompt_wav": "ref.wav", "speaker": "bob"}
    assert trained_run.choose_categories(full, chosen, where) == {"speaker": 1}
    with pytest.raises(trained_run.UsageError, match="or give a voice prompt"):
        trained_run.choose_categories(full, {}, where)


def test_tables_of_names_come_from_the_store_or_the_config(cfg):
    records = [{"id": "a", "speaker": "zoe"}, {"id": "b", "speaker": "amy"}]
    empty = dataclasses.replace(cfg, conditions=(ConditionConfig("speaker"),))
    assert conditioning.resolve(empty, records).conditions[0].values == ("amy", "zoe")
    pinned = [{"id": "a", "speaker": "zoe"}, {"id": "b", "speaker": "alice"}]
    with pytest.raises(ValueError, match=r"store's zoe is not in its values \['alice', 'bob'"):
        conditioning.resolve(cfg, pinned)
    with pytest.raises(ValueError, match="utterance 'c' has no speaker"):
        conditioning.resolve(empty, [*records, {"id": "c", "speaker": None}])
    with pytest.raises(ValueError, match="unknown speaker 'dan'; known: alice, bob, carol"):
        conditioning.lookup(cfg, "speaker", "dan")
    with pytest.raises(ConfigError, match="unknown attribute 'accent'"):
        conditioning.attributes(
            load_config(CONFIGS / "tiny.yaml", ["model.conditions=[{name: accent}]"]).model
        )


@pytest.fixture(scope="module")
def speaker_run(tmp_path_factory):
    """Two speakers, each saying the same two texts in its own codes, overfit by the trainer."""
    root = tmp_path_factory.mktemp("speakers")
    store = make_two_speaker_store(root / "store")
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [
            "model.conditions=[{name: speaker, drop_prob: 0}]",
            "model.cond_drop_prob=0",
            "data.val_fraction=0",
            "data.bucket_sizes=[64]",
            "data.batch_frames=256",
            "train.steps=60",
            "optim.lr=1e-2",
            "optim.warmup_steps=5",
            "checkpoint.every=1000",
            "log.every=10",
            "align.input_dropout=0",  # overfit: nothing hides the decoder's own past
        ],
    )
    assert train(cfg, store, root / "run", devices=jax.devices()[:1], progress=False) == 0
    return root / "run", CodeStore.open(store)


def test_each_speaker_says_a_text_in_its_own_codes(speaker_run):
    run_dir, store = speaker_run
    saved = json.loads(RunDir(run_dir).config.read_text())["model"]["conditions"]
    assert saved == [{"name": "speaker", "drop_prob": 0.0, "values": list(SPEAKERS)}]
    run = trained_run.load_run(run_dir)
    utts = {(u.text, u.speaker): u.codes for u in (store[i] for i in range(len(store)))}
    text = store[0].text
    ids, _ = trained_run.encode(run, text, "test")
    for s, speaker in enumerate(SPEAKERS):
        g = decode.generate(run.model, ids, Sampling(greedy=True), 80, {"speaker": [s]})
        own, other = utts[text, speaker], utts[text, SPEAKERS[1 - s]]
        n = min(own.shape[1], g.codes[0].shape[1])
        assert n > 20
        assert (g.codes[0][:, :n] == own[:, :n]).mean() > 0.9  # its own codes...
        assert (g.codes[0][:, :n] == other[:, :n]).mean() < 0.1  # ...not the other speaker's


def test_cli_lists_and_checks_speakers(speaker_run, tmp_path, capsys):
    run_dir, store = speaker_run

    def cli(*args):
        code = sample.main(["--workdir", str(run_dir), *map(str, args)])
        out, err = capsys.readouterr()
        return code, out, err

    assert cli("--list-speakers") == (0, "alice\nbob\n", "")
    code, _, err = cli(
        "--text", store[0].text, "--codes-out", tmp_path / "c.npy", "--speaker", "carol"
    )
    assert code == 2 and err == "error: --speaker: unknown speaker 'carol'; known: alice, bob\n"
    code, _, err = cli("--text", store[0].text, "--codes-out", tmp_path / "c.npy")
    assert code == 2 and err.count("\n") == 1 and "choose one with --speaker (alice, bob)" in err
    out = tmp_path / "bob.npy"
    assert cli("--text", store[0].text, "--codes-out", out, "--speaker", "bob", "--greedy")[0] == 0
    run = trained_run.load_run(run_dir)
    ids = trained_run.encode(run, store[0].text, "t")[0]
    frames = sampler._max_frames(run, None)
    want = decode.generate(run.model, ids, Sampling(greedy=True), frames, {"speaker": [1]})
    np.testing.assert_array_equal(np.load(out), want.codes[0])
    guided = ["--cfg-scale", 3, "--cfg-null", "text", "--follow"]
    assert (
        cli("--text", store[0].text, "--codes-out", out, "--speaker", "bob", "--greedy", *guided)[0]
        == 0
    )
    s = Sampling(greedy=True, cfg_scale=3.0, cfg_null="text", follow=True)
    want = decode.generate(run.model, ids, s, frames, {"speaker": [1]})
    np.testing.assert_array_equal(np.load(out), want.codes[0])


def test_a_default_speaker_is_chosen_unless_the_option_or_a_prompt_says_otherwise(speaker_run):
    run_dir, _ = speaker_run
    cfg = load_config(RunDir(run_dir).config)

    def chosen(c, **options):
        return trained_run.choose_categories(c, options, run_dir)

    with pytest.raises(trained_run.UsageError, match="choose one with --speaker"):
        chosen(cfg)
    bob = dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, speaker="bob"))
    assert chosen(bob) == {"speaker": 1}
    assert chosen(bob, speaker="alice") == {"speaker": 0}
    assert chosen(bob, prompt_wav="p.wav") == {"speaker": conditioning.NULL}
    assert load_config(RunDir(run_dir).config, ["sample.speaker=bob"]) == bob
    with pytest.raises(ConfigError, match="'carol' is not in the speaker table: alice, bob$"):
        load_config(RunDir(run_dir).config, ["sample.speaker=carol"])


def test_cli_refuses_a_speaker_for_a_run_without_one(tmp_path, capsys):
    from jtts.config import save_config

    save_config(load_config(CONFIGS / "tiny.yaml"), tmp_path / "config.json")
    code = sample.main(["--workdir", str(tmp_path), "--list-speakers"])
    err = capsys.readouterr().err
    assert (
        code == 2
        and err
        == f"error: --list-speakers: {tmp_path} was not trained with a speaker (model.conditions)\n"
    )
