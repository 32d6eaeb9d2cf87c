"""`python -m jtts.sample` end to end on an overfit tiny run, and its error messages."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import psutil
import pytest
import soundfile as sf
from flax import nnx
from synthetic import make_store, subprocess_env

from codec_bridge.format import CodeStore, load_codes, make_meta
from jtts import decode, sample, sampler, trained_run
from jtts.checkpoint import Checkpointer
from jtts.conditioning import Cond
from jtts.config import load_config, save_config
from jtts.data import encode_text
from jtts.model import build_model
from jtts.patterns import get_pattern
from jtts.rundir import RunDir
from jtts.sampling import Sampling
from jtts.text import get_tokenizer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GREEDY = ["--greedy", "--cfg-scale", "1"]


def overfit(cfg, texts, codes, max_steps=400):
    """Trains `cfg.model` with the teacher-forced loss until it predicts every target."""
    k, c = cfg.model.n_codebooks, cfg.model.codebook_size
    text = np.zeros((len(texts), max(map(len, texts))), np.int32)
    for i, ids in enumerate(texts):
        text[i, : len(ids)] = ids
    lengths = np.array([x.shape[1] for x in codes])
    padded = np.zeros((len(codes), k, lengths.max()), np.int32)
    for i, x in enumerate(codes):
        padded[i, :, : x.shape[1]] = x
    pattern = get_pattern(cfg.model.pattern, k, c)
    inputs, targets, mask = pattern.decoder_io(pattern.apply(padded, lengths))
    graphdef, params = nnx.split(build_model(cfg.model, nnx.Rngs(0)), nnx.Param)
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt):
        def loss_fn(p):
            cond = Cond.of_text(text, text > 0)
            logits = nnx.merge(graphdef, p)(cond, inputs)[0].transpose(0, 2, 1, 3)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
            exact = ((logits.argmax(-1) == targets) | ~mask).all()
            return (ce * mask).sum() / mask.sum(), exact

        (loss, exact), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss, exact

    opt = tx.init(params)
    for i in range(max_steps):
        params, opt, loss, exact = step(params, opt)
        if exact and loss < 0.05:
            return params, i + 1
    raise AssertionError(f"tiny model did not fit {len(texts)} utterances: loss {loss}")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run dir (checkpoint, config.json, store.json) of tiny overfit to 3 utterances."""
    root = tmp_path_factory.mktemp("sampler")
    store = CodeStore.open(make_store(root / "store", 3, frames=(10, 16), structured=True))
    cfg = load_config(CONFIGS / "tiny.yaml")
    utts = [store[i] for i in range(len(store))]
    texts = [encode_text(u.text, cfg.data.text_normalizer) for u in utts]
    params, steps = overfit(cfg, texts, [u.codes.astype(np.int32) for u in utts])
    return save_run(root / "run", cfg, params, steps, store), utts


def save_run(run_dir, cfg, params, steps, store):
    """A run directory as `jtts.train` leaves it: checkpoint, config.json, store.json."""
    ckpt = Checkpointer(run_dir, cfg)
    ckpt.save(steps, {"params": nnx.to_pure_dict(params), "step": np.int32(steps)}, {"epoch": 0})
    ckpt.wait()
    ckpt.close()
    save_config(cfg, RunDir(run_dir).config)
    meta = {k: v for k, v in store.meta.items() if k != "shards"}
    RunDir(run_dir).store.write_text(json.dumps({**meta, "store_dir": str(store.root)}))
    return run_dir


def cli(capsys, *args):
    code = sample.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_reproduces_training_codes(run, tmp_path):
    """A fresh process: text file -> normalized tokens -> checkpoint -> greedy codes, exactly."""
    run_dir, utts = run
    lines = tmp_path / "lines.txt"
    lines.write_text(f"{utts[0].text}\n\n{utts[1].text}\n{utts[2].text}\n")
    out = tmp_path / "codes"
    cmd = [sys.executable, "-m", "jtts.sample", "--workdir", run_dir, "--text-file", lines]
    proc = subprocess.run(
        [str(a) for a in [*cmd, "--codes-out", out, *GREEDY]],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.glob("*.npy")) == ["0001.npy", "0003.npy", "0004.npy"]
    for name, utt in zip(["0001", "0003", "0004"], utts, strict=True):
        codes, meta = load_codes(out / f"{name}.npy")
        np.testing.assert_array_equal(codes, utt.codes)  # every code and the length
        assert meta["store_dir"] == str(Path(run_dir).parent / "store")
        assert meta["codec"] == "synthetic" and meta["text"] == utt.text
    total = sum(u.codes.shape[1] for u in utts) / 75.0
    for word in (f"audio {total:.2f} s", "wall", "RTF", "compile"):
        assert word in proc.stdout


def test_a_byte_units_model_reproduces_training_codes(run, tmp_path, capsys):
    """model.text_units=bytes end to end: the sampler encodes bytes as training did."""
    run_dir, utts = run
    # No prior: overfit() trains no length head for sampling to spread it over.
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        ["model.text_units=bytes", "model.text_embed=none", "model.max_text_len=256"]
        + ["model.attention_prior=null"],
    )
    texts = [encode_text(u.text, cfg.data.text_normalizer, "bytes") for u in utts]
    assert all(
        len(t) > len(encode_text(u.text, cfg.data.text_normalizer))
        for t, u in zip(texts, utts, strict=True)
    )
    params, steps = overfit(cfg, texts, [u.codes.astype(np.int32) for u in utts])
    store = CodeStore.open(Path(run_dir).parent / "store")
    byte_run = save_run(tmp_path / "run", cfg, params, steps, store)
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(u.text for u in utts) + "\n")
    code, _, err = cli(
        capsys,
        "--workdir",
        byte_run,
        "--text-file",
        lines,
        "--codes-out",
        tmp_path / "codes",
        *GREEDY,
    )
    assert code == 0, err
    for i, utt in enumerate(utts, 1):
        np.testing.assert_array_equal(load_codes(tmp_path / "codes" / f"{i:04d}.npy")[0], utt.codes)


def test_split_sentences_concatenates_codes(run, tmp_path, capsys):
    run_dir, utts = run
    text = ". ".join(u.text.rstrip(".") for u in utts) + "."
    out = tmp_path / "joined.npy"
    code, _, err = cli(capsys, "--workdir", run_dir, "--text", text, "--codes-out", out, *GREEDY)
    if code == 2:  # the joined text is longer than max_text_len
        assert "--split-sentences" in err
    args = ["--workdir", run_dir, "--text", text, "--codes-out", out, "--split-sentences"]
    assert cli(capsys, *args, *GREEDY)[0] == 0
    expected = np.concatenate([u.codes for u in utts], axis=1)
    np.testing.assert_array_equal(load_codes(out)[0], expected)
    assert load_codes(out)[1]["eos"] is True  # every sentence ended by EOS


def test_max_seconds_cap_warns(run, tmp_path, capsys):
    run_dir, utts = run
    args = ["--workdir", run_dir, "--text", utts[0].text, "--codes-out", tmp_path / "c.npy"]
    code, _, err = cli(capsys, *args, "--max-seconds", 0.1, *GREEDY)
    assert code == 0
    assert "warning: --text: no EOS within 0.1 s" in err
    assert load_codes(tmp_path / "c.npy")[0].shape == (8, 8)  # round(0.1 s * 75)
    assert load_codes(tmp_path / "c.npy")[1]["eos"] is False  # the sidecar says so


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "  "], "--text is empty"),
        (["--text", "?!", "--codes-out", "x.npy"], "empty after normalization"),
        (["--text", "word " * 80, "--codes-out", "x.npy"], "pass --split-sentences"),
        (["--text", "hi", "--out-dir", "d"], "--text writes --out"),
        (["--text", "hi", "--codes-out", "x.npy", "--step", "999"], "no checkpoint for step"),
        (["--text", "hi", "--codes-out", "x.npy", "--top-p", "0"], "top-p"),
        (["--text", "hi", "--codes-out", "x.npy", "--length-scale", "0"], "length scale"),
    ],
)
def test_usage_errors(run, tmp_path, capsys, args, message):
    code, _, err = cli(capsys, "--workdir", run[0], *args)
    assert code == 2
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_length_scale_needs_the_models_own_prior(run, tmp_path, capsys):
    """Every config now carries the prior; a model trained without one has no length to scale."""
    cfg = load_config(CONFIGS / "tiny.yaml", ["model.attention_prior=null"])
    params = nnx.state(build_model(cfg.model, nnx.Rngs(0)), nnx.Param)
    store = CodeStore.open(json.loads(RunDir(run[0]).store.read_text())["store_dir"])
    run_dir = save_run(tmp_path / "run", cfg, params, 1, store)
    args = ["--text", "hi", "--codes-out", tmp_path / "x.npy", "--length-scale", "1.1"]
    code, _, err = cli(capsys, "--workdir", run_dir, *args)
    assert code == 2
    assert "no attention prior" in err and err.startswith("error: ") and err.count("\n") == 1


def test_run_dir_errors(run, tmp_path, capsys):
    code, _, err = cli(capsys, "--workdir", tmp_path / "nope", "--text", "hi", "--out", "x.wav")
    assert code == 2 and "no such directory" in err
    code, _, err = cli(capsys, "--workdir", tmp_path, "--text", "hi", "--out", "x.wav")
    assert code == 2 and "has no checkpoints; train first" in err
    RunDir(tmp_path).layout_file.write_text('{"layout": 2}')  # a run of a newer jtts
    code, _, err = cli(capsys, "--workdir", tmp_path, "--text", "hi", "--out", "x.wav")
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'run.json'}: run directory layout 2, this jtts reads layout 1" in err


def test_codec_failure_is_one_line(run, tmp_path, capsys):
    """The synthetic store's codec cannot be loaded, so the decode subprocess fails."""
    run_dir, utts = run
    args = ["--workdir", run_dir, "--text", utts[1].text, "--out", tmp_path / "x.wav"]
    code, _, err = cli(capsys, *args, *GREEDY)
    assert code == 1
    assert err.startswith("error: codec decode failed: ") and err.count("\n") == 1


def test_default_cap_covers_the_longest_training_utterance(run):
    r = trained_run.load_run(run[0])
    assert r.cfg.sample.max_seconds * r.frame_rate < r.cfg.data.max_frames  # tiny: 2 s < 5.3 s
    assert sampler._max_frames(r, None) == r.cfg.data.max_frames
    assert sampler._max_frames(r, 1.0) == 75  # an explicit --max-seconds still rules


def test_non_utf8_text_file_names_the_line(run, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"hello there\n\ncaf\xe9 au lait\n")
    code, _, err = cli(capsys, "--workdir", run[0], "--text-file", lines, "--out-dir", tmp_path)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: --text-file {lines}:3: not UTF-8 (byte 0xe9)")


def test_a_damaged_newest_checkpoint_falls_back_with_a_warning(run, tmp_path, capsys):
    run_dir, utts = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (good,) = [p for p in RunDir(copy).checkpoints.iterdir() if p.name.isdigit()]
    newer = RunDir(copy).checkpoint(int(good.name) + 100)
    shutil.copytree(good, newer)
    (newer / "params" / "_METADATA").write_text("{")
    out = tmp_path / "c.npy"
    code, _, err = cli(
        capsys, "--workdir", copy, "--text", utts[0].text, "--codes-out", out, *GREEDY
    )
    assert code == 0, err
    (line,) = [ln for ln in err.splitlines() if "damaged" in ln]
    assert line.startswith(
        f"warning: damaged checkpoint in {copy / 'checkpoints'}: step {newer.name} ("
    )
    assert line.endswith(f"using step {good.name}")
    np.testing.assert_array_equal(load_codes(out)[0], utts[0].codes)


def test_codes_that_cannot_be_written_are_one_line(run, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    args = ["--workdir", run[0], "--text", run[1][0].text, "--codes-out", blocker / "c.npy"]
    code, _, err = cli(capsys, *args, *GREEDY)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {blocker}: ")
    # With a wav asked for, the codec decoder started before the codes: it is stopped too.
    code, _, err = cli(capsys, *args, "--out", tmp_path / "x.wav", *GREEDY)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {blocker}: ")
    assert psutil.Process().children() == [] and not (tmp_path / "x.wav").exists()


LONG = ("The quick brown fox jumps over the lazy dog. " * 445)[:20_000]


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("", [], "--text is empty"),
        (" \t \n ", [], "--text is empty"),
        ("?!... ;-- «»", [], "empty after normalization"),
        ("🎉🙂👩‍👩‍👧‍👦", [], "empty after normalization"),
        ("hi\x07 there\x1b[0m \x7f", [], None),
        ("你好，世界", [], None),
        ("مرحبا بالعالم", [], None),
        (LONG, [], "pass --split-sentences"),
        (LONG, ["--split-sentences", "--batch-size", "512"], None),
    ],
    ids=[
        "empty",
        "whitespace",
        "punctuation",
        "emoji",
        "control",
        "chinese",
        "arabic",
        "20000-chars",
        "20000-chars-split",
    ],
)
def test_any_text_gives_speech_or_one_line(run, tmp_path, capsys, text, extra, message):
    """Exit 0 with codes, or exit 2 with one line naming the problem; never a traceback."""
    out = tmp_path / "c.npy"
    args = ["--workdir", run[0], "--text", text, "--codes-out", out, "--max-seconds", 0.05]
    code, _, err = cli(capsys, *args, *extra, *GREEDY)
    if message is None:
        assert code == 0, err
        assert load_codes(out)[0].shape[1] > 0
    else:
        assert code == 2 and message in err
        assert err.startswith("error: ") and err.count("\n") == 1


def test_print_normalized_and_sidecar(run, tmp_path, capsys):
    """The run's normalizer (whisper_english keeps "$3.50"), one line per text, and the sidecar."""
    lines = tmp_path / "lines.txt"
    lines.write_text("Dr. Smith paid $3.50.\n\nI'm at 5 Main St. Bye!\n")
    args = ["--workdir", run[0], "--text-file", lines, "--codes-out", tmp_path / "c"]
    code, out, err = cli(capsys, *args, "--print-normalized", "--max-seconds", 0.05, *GREEDY)
    assert code == 0, err
    said = ["doctor smith paid $3.50", "i am at 5 main saint bye"]
    assert out.splitlines()[:2] == said
    for name, spoken in zip(["0001", "0003"], said, strict=True):
        assert load_codes(tmp_path / "c" / f"{name}.npy")[1]["normalized"] == spoken


@pytest.fixture
def spoken_run(run, monkeypatch):
    """The tiny run as if trained with `data.text_normalizer=spoken_english` (as the CLI loads
    it: `sampler.load_run` is the name it calls)."""
    load = trained_run.load_run

    def load_spoken(run_dir, step=None):
        r = load(run_dir, step)
        data = dataclasses.replace(r.cfg.data, text_normalizer="spoken_english")
        return dataclasses.replace(r, cfg=dataclasses.replace(r.cfg, data=data))

    monkeypatch.setattr(sampler, "load_run", load_spoken)
    return run


def test_spoken_form_is_printed_and_encoded(spoken_run, tmp_path, capsys):
    text = "Dr. Smith paid $3.50 on Dec. 5, 2026. It was 25% off!"
    out = tmp_path / "c.npy"
    args = ["--workdir", spoken_run[0], "--text", text, "--codes-out", out, "--split-sentences"]
    code, stdout, err = cli(capsys, *args, "--print-normalized", "--max-seconds", 0.05, *GREEDY)
    assert code == 0, err
    said = (
        "doctor smith paid three dollars and fifty cents on december fifth twenty twenty six "
        "it was twenty five percent off"
    )
    assert stdout.splitlines()[0] == said
    assert load_codes(out)[1]["normalized"] == said
    r = sampler.load_run(spoken_run[0])  # the spoken run that spoken_run patched in
    chunks, spoken = trained_run.encode(r, text, "--text", split=True)
    assert spoken == said and len(chunks) == 2
    tok = get_tokenizer("whisper")
    assert [tok.decode(ids[:-1]) for ids in chunks] == [
        "doctor smith paid three dollars and fifty cents on december fifth twenty twenty six",
        "it was twenty five percent off",
    ]


def noise_wav(path: Path, seconds: float, sr: int = 24000, channels: int = 1) -> Path:
    wav = 0.3 * np.random.default_rng(0).standard_normal((round(seconds * sr), channels))
    sf.write(str(path), wav, sr, subtype="FLOAT")
    return path


PROMPT_ERRORS = {
    "text-without-wav": (None, ["--prompt-text", "hello"], "--prompt-text is the transcript"),
    "missing": (lambda p: p, [], "nope.wav: no such file"),
    "not-audio": (lambda p: (p.write_text("not audio"), p)[1], [], "nope.wav: unreadable audio"),
    "short": (lambda p: noise_wav(p, 0.5), [], "too short (0.50 s < --min-seconds 1)"),
    "long": (lambda p: noise_wav(p, 10.5), [], "too long (10.5 s > --max-seconds 10)"),
    "text-too-long": (lambda p: p, ["--prompt-text", "word " * 60], "with the --prompt-text"),
}


@pytest.mark.parametrize("case", PROMPT_ERRORS)
def test_bad_prompts_are_one_line(run, tmp_path, capsys, case):
    """Checked before the codec loads (the synthetic run has none): exit 2, one line."""
    make, extra, message = PROMPT_ERRORS[case]
    wav = [] if make is None else ["--prompt-wav", make(tmp_path / "nope.wav")]
    args = ["--workdir", run[0], "--text", "hi " * 20, "--codes-out", tmp_path / "c.npy"]
    code, _, err = cli(capsys, *args, *wav, *extra, *GREEDY)
    assert code == 2 and message in err, err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.fixture(scope="module")
def codec_run(run, tmp_path_factory):
    """The tiny run as if trained on codes of the untrained 24 kHz EnCodec at 6 kbps (8
    codebooks of 1024, as the synthetic store's): a prompt is really encoded and decoded."""
    from codec_bridge.codec import load_codec  # torch, for this fixture only

    root = tmp_path_factory.mktemp("codec_run")
    codec = load_codec("24khz", "untrained", seed=0, device="cpu", store=root / "store")
    codec.set_bandwidth(6.0)
    other = root / "run"
    other.mkdir()
    RunDir(other).checkpoints.symlink_to(RunDir(run[0]).checkpoints)
    shutil.copy(RunDir(run[0]).config, RunDir(other).config)
    meta = {**make_meta(**codec.meta()), "store_dir": str(root / "store")}
    RunDir(other).store.write_text(json.dumps(meta))
    return other, run[1]


def test_a_prompt_is_continued_and_left_out_of_the_output(codec_run, tmp_path, capsys):
    """8 kHz stereo is resampled and mixed down; the codes equal the library's decode of the
    prompt's transcript + the text after the clip's codes, and the wav holds only them."""
    from codec_bridge.encoding import encode_file

    run_dir, utts = codec_run
    ref = noise_wav(tmp_path / "ref.wav", 1.2, sr=8000, channels=2)
    said, text = "printing in the only sense", utts[0].text
    out, codes_out = tmp_path / "x.wav", tmp_path / "x.npy"
    args = ["--workdir", run_dir, "--text", text, "--out", out, "--codes-out", codes_out]
    prompt_args = ["--prompt-wav", ref, "--prompt-text", said, "--max-seconds", 0.2]
    code, _, err = cli(capsys, *args, *prompt_args, *GREEDY)
    assert code == 0, err
    codes, meta = load_codes(codes_out)
    assert meta["prompt"] == {"wav": str(ref), "text": said, "frames": 90}
    r = trained_run.load_run(run_dir)
    prompt = encode_file(ref, r.store_meta, device="cpu")[0]
    ids = encode_text(f"{said} {text}", r.cfg.data.text_normalizer)
    sampling = Sampling.of(r.cfg.sample, greedy=True, seed=0, cfg_scale=1.0)
    want = decode.generate(r.model, [ids], sampling, 15, prompt=prompt).codes[0]
    np.testing.assert_array_equal(codes, want)
    plain = decode.generate(r.model, [ids], sampling, 15).codes[0]
    assert not np.array_equal(codes, plain)
    assert sf.info(str(out)).frames == codes.shape[1] * 320


@pytest.mark.parametrize(
    ("seconds", "message"),
    [(0.0, "silent (peak below -80 dBFS)"), (5.0, "its 5.0 s leave 0.3 s of the model's 5.3 s")],
)
def test_prompts_the_codec_refuses_or_that_leave_no_room(
    codec_run, tmp_path, capsys, seconds, message
):
    ref = tmp_path / "ref.wav"
    if seconds:
        noise_wav(ref, seconds)
    else:
        sf.write(str(ref), np.zeros(24000), 24000)
    args = ["--workdir", codec_run[0], "--text", "hi", "--codes-out", tmp_path / "c.npy"]
    code, _, err = cli(capsys, *args, "--prompt-wav", ref, *GREEDY)
    assert code == 2 and message in err, err
    assert err.startswith(f"error: --prompt-wav {ref}: ") and err.count("\n") == 1
