"""`codec_bridge train` on tiny configs: it learns, resumes exactly after kill -9, keeps its
codebooks alive, and exports weights that `EncodecModel`, `extract` and `decode` use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from encodec import EncodecModel
from encodec.modules import SEANetDecoder, SEANetEncoder
from encodec.quantization import ResidualVectorQuantizer

from codec_bridge.cli import main
from codec_bridge.codec_config import CodecConfig
from codec_bridge.format import CodeStore
from codec_bridge.training.quantizer_init import (
    DeadCodeReviver,
    codes_used,
    kmeans_init,
    live_codes,
)
from codec_bridge.training.rundir import CodecRunDir
from codec_bridge.training.train import load_config, train
from speechcorpus.grammar import build_corpus

TINY = ["--format", "ljspeech", "--config", "tiny", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("espeak") / "corpus", n=6)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A tiny run of 40 steps (k-means after 5)."""
    run = tmp_path_factory.mktemp("run") / "tiny"
    assert main(["train", *TINY, "--input", str(corpus), "--out", str(run), "--steps", "40"]) == 0
    return run


def _train_rows(run) -> list[dict]:
    rows = [json.loads(x) for x in CodecRunDir(run).metrics.read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


def test_loss_falls_and_run_dir_is_complete(trained):
    rows = _train_rows(trained)
    assert [r["step"] for r in rows] == list(range(1, 41))
    first = np.mean([r["mel"] for r in rows[:3]])
    last = np.mean([r["mel"] for r in rows[-10:]])
    assert last < 0.6 * first, (first, last)
    assert sum(r["quantized"] for r in rows) > 10  # quantized on about half the steps after k-means
    run = CodecRunDir(trained)
    assert run.spectrogram(40).stat().st_size > 1000
    assert list(run.samples(40).glob("*.wav"))
    assert list(run.tensorboard.iterdir())
    evals = [json.loads(x) for x in run.metrics.read_text().splitlines()]
    assert {"log_mel_distance", "si_snr", "codes_used"} <= set(
        next(r for r in evals if r["kind"] == "eval")
    )


def _run(corpus, out, steps, **popen):
    args = [sys.executable, "-m", "codec_bridge", "train", *TINY, "--input", str(corpus)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*args, "--out", str(out), "--steps", str(steps)], env=env, **popen)


def test_resume_after_kill_9_is_bit_identical(corpus, tmp_path):
    steps = 10
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = _run(corpus, whole, steps)  # runs beside the killed one
    proc = _run(corpus, killed, steps)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it mid-run, after its first checkpoint (step 5)
        if CodecRunDir(killed).metrics.exists() and len(_train_rows(killed)) >= 6:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert CodecRunDir(killed).checkpoint.exists() and len(_train_rows(killed)) < steps
    assert _run(corpus, killed, steps).wait(timeout=120) == 0
    assert uninterrupted.wait(timeout=120) == 0
    timing = {"s_per_step", "minutes"}
    a, b = (
        [{k: v for k, v in r.items() if k not in timing} for r in _train_rows(d)]
        for d in (whole, killed)
    )
    assert a == b and len(a) == steps
    wa, wb = (
        torch.load(CodecRunDir(d).weights, weights_only=True)["state_dict"] for d in (whole, killed)
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def _mixture(n: int, centers: torch.Tensor) -> torch.Tensor:
    pick = torch.randint(0, centers.shape[0], (n,))
    return (centers[pick] + 0.3 * torch.randn(n, centers.shape[1])).T[None]


@pytest.mark.parametrize("ours", [True, False])
def test_kmeans_and_revival_keep_codes_alive(ours):
    """400 clusters, 256 codes, 100 vectors a step. encodec's own init clusters the first
    batch only and never revives what dies; ours keeps >= 90% of codes in use."""
    torch.manual_seed(0)
    centers = 3 * torch.randn(400, 16)
    q = ResidualVectorQuantizer(
        dimension=16,
        n_q=2,
        bins=256,
        kmeans_init=not ours,
        threshold_ema_dead_code=0 if ours else 2,
    )
    if ours:
        kmeans_init(q, _mixture(4000, centers), 100, seed=0)
        reviver = DeadCodeReviver(q)
    q.train()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(150):
            q(_mixture(100, centers), 1, None)
            if ours:
                reviver.step(100, gen)
    q.eval()
    used = codes_used(q.encode(_mixture(8000, centers), 1, None), 256)
    alive = live_codes(q, 100)
    if ours:
        assert min(used) >= 0.9 * 256 and min(alive) >= 0.9 * 256, (used, alive)
    else:  # the failure this module exists for
        assert min(used) < 0.9 * 256


def test_revived_codes_survive_the_ema_update():
    """The bug in encodec 0.1.1: a replaced code is overwritten by the next EMA update."""
    torch.manual_seed(0)
    q = ResidualVectorQuantizer(
        dimension=4, n_q=1, bins=8, kmeans_init=False, threshold_ema_dead_code=0
    )
    book = q.vq.layers[0]._codebook
    book.cluster_size.fill_(10.0)
    book.cluster_size[3] = 0.0  # code 3 is dead
    book.embed_avg.copy_(book.embed * book.cluster_size[:, None])
    reviver = DeadCodeReviver(q)
    q.train()
    x = torch.randn(1, 4, 50) + 100  # far from every code: only revival can reach it
    with torch.no_grad():
        q(x, 1, None)
        reviver.step(50, torch.Generator().manual_seed(0))
        q(x, 1, None)  # the EMA update that used to undo the replacement
    assert (book.embed[3] - 100).abs().max() < 5


def _plain_encodec(cfg: CodecConfig) -> EncodecModel:
    """The model built from encodec's classes by hand, without the bridge's builder."""
    kw = dict(
        channels=1, dimension=cfg.dimension, n_filters=cfg.n_filters, lstm=cfg.lstm, causal=True
    )
    q = ResidualVectorQuantizer(dimension=cfg.dimension, n_q=cfg.n_q, bins=cfg.bins)
    return EncodecModel(
        SEANetEncoder(**kw),
        SEANetDecoder(**kw),
        q,
        list(cfg.bandwidths),
        cfg.sample_rate,
        1,
        normalize=True,
    )


@pytest.mark.filterwarnings("ignore::FutureWarning")  # encodec's deprecated weight_norm
def test_weights_load_through_encodec_and_round_trip_extract_decode(trained, corpus, tmp_path):
    weights = CodecRunDir(trained).weights
    state = torch.load(weights, weights_only=True)
    cfg = CodecConfig.from_dict(state["encodec_config"])
    model = _plain_encodec(cfg)
    model.load_state_dict(state["state_dict"])
    model.eval().set_target_bandwidth(cfg.bandwidths[-1])

    store, wav_out = tmp_path / "store", tmp_path / "x.wav"
    args = ["extract", "--format", "ljspeech", "--input", str(corpus), "--out", str(store)]
    assert main([*args, "--weights", str(weights), "--bandwidth", "1.5", "--quiet"]) == 0
    codes_store = CodeStore.open(store)
    assert codes_store.meta["codec"] == cfg.name and codes_store.meta["n_codebooks"] == cfg.n_q
    utt = codes_store.get("DEMO-0000")
    audio, sr = sf.read(corpus / "wavs" / "DEMO-0000.wav", dtype="float32")
    from encodec.utils import convert_audio

    wav = convert_audio(torch.from_numpy(audio)[None], sr, cfg.sample_rate, 1)
    with torch.no_grad():
        frames = model.encode(wav[None])
    assert np.array_equal(frames[0][0][0].numpy(), utt.codes)

    assert main(["decode", "--store", str(store), "--id", "DEMO-0000", "--out", str(wav_out)]) == 0
    decoded, rate = sf.read(wav_out, dtype="float32")
    with torch.no_grad():
        ref = model.decode(
            [(torch.from_numpy(utt.codes.astype(np.int64))[None], torch.tensor([[0.05]]))]
        )
    assert rate == cfg.sample_rate and decoded.shape[0] == ref.shape[-1]
    assert np.abs(decoded - np.clip(ref[0, 0].numpy(), -1, 1)).max() < 2e-4  # 16-bit rounding


@pytest.mark.filterwarnings("ignore::FutureWarning")  # encodec's deprecated weight_norm
def test_export_halves_the_file_and_gives_the_float16_rounded_codecs_codes(
    trained, corpus, tmp_path, capsys
):
    release = tmp_path / "release.pt"
    weights = CodecRunDir(trained).weights
    assert main(["export", str(weights), str(release)]) == 0
    assert "float16" in capsys.readouterr().out
    assert release.stat().st_size < 0.55 * weights.stat().st_size

    # Reference: the full file's model with every float tensor rounded to float16 by hand.
    state = torch.load(weights, weights_only=True)
    cfg = CodecConfig.from_dict(state["encodec_config"])
    model = _plain_encodec(cfg)
    model.load_state_dict(
        {
            k: v.half().float() if v.is_floating_point() else v
            for k, v in state["state_dict"].items()
        }
    )
    model.eval().set_target_bandwidth(cfg.bandwidths[-1])
    store = tmp_path / "store"
    args = ["extract", "--format", "ljspeech", "--input", str(corpus), "--out", str(store)]
    assert main([*args, "--weights", str(release), "--bandwidth", "1.5", "--quiet"]) == 0
    audio, sr = sf.read(corpus / "wavs" / "DEMO-0001.wav", dtype="float32")
    from encodec.utils import convert_audio

    with torch.no_grad():
        frames = model.encode(
            convert_audio(torch.from_numpy(audio)[None], sr, cfg.sample_rate, 1)[None]
        )
    assert np.array_equal(frames[0][0][0].numpy(), CodeStore.open(store).get("DEMO-0001").codes)

    assert main(["export", str(corpus / "metadata.csv"), str(tmp_path / "x.pt")]) == 2
    assert "cannot load weights" in capsys.readouterr().err


def test_bad_config_and_changed_settings_are_one_line_errors(corpus, trained, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("codec:\n  n_filterz: 4\n")
    assert (
        main(
            [
                "train",
                *TINY[:2],
                "--config",
                str(bad),
                "--input",
                str(corpus),
                "--out",
                str(tmp_path / "r"),
                "--steps",
                "1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.yaml" in err and "n_filterz" in err
    for item in ("train.nope=1", "train.lr=[1"):  # an unknown key, an unparsable value
        out = str(tmp_path / "r")
        assert main(["train", *TINY, "--input", str(corpus), "--out", out, "--set", item]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--set {item}" in err, err
    rc = main(
        [
            "train",
            *TINY,
            "--input",
            str(corpus),
            "--out",
            str(trained),
            "--steps",
            "41",
            "--set",
            "train.lr=0.1",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "train.lr" in err and "config.json" in err
    rc = main(
        [
            "train",
            *TINY,
            "--input",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "r2"),
            "--steps",
            "1",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "nowhere" in err and len(err.splitlines()) == 1


def test_configs_ship_and_bandwidths_must_fit():
    for name in ("tiny", "small"):
        codec, tc = load_config(name)
        assert codec.n_q >= 1 and tc.batch_size >= 1
    assert CodecConfig(sample_rate=16000).n_q == 12  # 6 kbps at 50 frames/s, 10 bits a code
    with pytest.raises(Exception, match="whole number of codebooks"):
        CodecConfig(bandwidths=(1.0,))


def test_minutes_limit_stops_and_resume_continues(corpus, tmp_path):
    out = tmp_path / "m"
    assert (
        train("ljspeech", corpus, out, config="tiny", minutes=0.02, threads=1, progress=False) == 0
    )
    first = _train_rows(out)[-1]
    assert 0.02 <= first["minutes"] < 0.5
    assert (
        train(
            "ljspeech",
            corpus,
            out,
            config="tiny",
            steps=first["step"] + 3,
            threads=1,
            progress=False,
        )
        == 0
    )
    assert _train_rows(out)[-1]["step"] == first["step"] + 3


def test_a_manifest_of_nested_paths_trains_and_keeps_its_samples(corpus, tmp_path):
    """Manifest ids default to their paths (`voice/wavs/x`): the samples of an evaluation
    are named after the id made safe, inside the step's folder."""
    rows = [line.split("|")[:2] for line in (corpus / "metadata.csv").read_text().splitlines()]
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,text\n" + "".join(f'{corpus}/wavs/{i}.wav,"{t}"\n' for i, t in rows[:6])
    )
    args = ["train", "--format", "manifest", "--input", str(manifest), "--out", str(tmp_path / "r")]
    assert main([*args, *TINY[2:], "--steps", "10"]) == 0  # tiny evaluates every 10 steps
    wavs = list(CodecRunDir(tmp_path / "r").samples(10).glob("*.wav"))
    assert wavs and all("~" in w.name for w in wavs)
