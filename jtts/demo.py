"""`make demo`: the whole pipeline on a corpus it makes itself, with no network and no dataset.

Each stage runs the same command a user would type (printed before it runs), so the demo
doubles as a walkthrough: eSpeak NG corpus → `codec_bridge extract` → `jtts.train` (`configs/demo.yaml`)
→ `jtts.sample` on three unseen sentences → `demo/report.png`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from jtts import demo_corpus
from jtts.metrics import read_jsonl

_NO_PRETRAINED = """
*** The pretrained EnCodec weights are not available on this machine (no network, nothing in
*** the torch hub cache), so the demo continues with an UNTRAINED codec (seeded random weights).
*** Its codes are real RVQ codes of a real network, but it reconstructs noise-like audio: the
*** demo's .wav files show the pipeline working, not speech quality.
"""

_NEXT_STEPS = """
Train on a real dataset (LJ Speech) with the pretrained codec:
  # once, where the network is open (or copy encodec_24khz-d7cc33bc.th into
  # ~/.cache/torch/hub/checkpoints/ by hand):
  .venv/bin/python -c "from encodec import EncodecModel; EncodecModel.encodec_model_24khz()"
  .venv/bin/python -m codec_bridge extract --format ljspeech --input LJSpeech-1.1 \\
      --out stores/ljspeech --weights pretrained --bandwidth 6
  .venv/bin/python -m jtts.train --config configs/base.yaml --data stores/ljspeech \\
      --workdir runs/ljspeech
  .venv/bin/python -m jtts.sample --workdir runs/ljspeech --text "Hello world." --out hello.wav
"""


ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo.yaml"
# A codec trained by `codec_bridge train` on eSpeak NG speech (`codecs/` holds its run; the
# weights file is not shipped yet): used when the pretrained EnCodec weights cannot load.
DEMO_CODEC = ROOT / "codecs" / "demo_codec.pt"
SENTENCES = 1200
STEPS = 1000


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    return subprocess.run(cmd, **kw)


def extract(corpus: Path, store: Path, weights: str | None = None) -> str:
    """Codes for `corpus` in `store` with `weights`, or by default: the pretrained codec when
    it can be loaded, else the repository's demo codec, else the untrained one (loudly).
    Returns the weights used; a store that exists is resumed with the weights it records."""
    base = [sys.executable, "-m", "codec_bridge", "extract", "--format", "ljspeech"]
    base += ["--input", str(corpus), "--out", str(store), "--bandwidth", "6"]
    if (store / "meta.json").exists():
        record = json.loads((store / "meta.json").read_text())["weights"]
        weights = record["path"] if record["kind"] == "file" else record["kind"]
    if weights is not None:
        _run([*base, "--weights", weights], check=True)
        return weights
    if _run([*base, "--weights", "pretrained"]).returncode == 0:
        return "pretrained"
    if DEMO_CODEC.exists():
        _run([*base, "--weights", str(DEMO_CODEC)], check=True)
        return str(DEMO_CODEC)
    print(_NO_PRETRAINED, file=sys.stderr, flush=True)
    _run([*base, "--weights", "untrained", "--seed", "0"], check=True)
    return "untrained"


def train_command(store: Path, run: Path, steps: int, overrides: list[str] = ()) -> list[str]:
    """`python -m jtts.train` with the demo config for `steps` steps (plus `overrides`)."""
    sets = [f"train.steps={steps}", *overrides]
    return [
        *(sys.executable, "-m", "jtts.train", "--config", str(CONFIG)),
        *("--data", str(store), "--workdir", str(run), "--set", *sets),
    ]


def _spectrogram(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    x = audio.mean(axis=1)
    n_fft, hop = 1024, 256
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (0, n_fft)), n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    return 10 * np.log10(power.T + 1e-10), sr


def latest_attention(run: Path) -> tuple[np.ndarray, int] | None:
    """The last evaluation's attention picture (text tokens x steps) and its step."""
    saved = sorted(run.glob("attention/step_*.npy"), key=lambda p: int(p.stem.split("_")[1]))
    if not saved:
        return None
    return np.load(saved[-1]).astype(np.float32), int(saved[-1].stem.split("_")[1])


def reading_summary(run: Path) -> dict[str, float] | None:
    """The last evaluation's held-out text gain (cb0 and mean) and attention figures."""
    rows = read_jsonl(run / "metrics.jsonl")
    evals = [r for r in rows if "eval/text_gain" in r]
    if not evals:
        return None
    last = evals[-1]
    keys = ("text_gain", "text_gain_cb0", "null_gain", "attn_focus", "attn_monotonicity")
    return {"step": last["step"], **{k: last[f"eval/{k}"] for k in keys}}


def write_report(run: Path, reference_wav: Path, synth_wav: Path, out: Path) -> None:
    """Loss curves, held-out text gain, the attention of a validation sentence, and the
    spectrograms of an unseen sentence spoken by eSpeak NG and by jtts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(run / "metrics.jsonl")
    fig, axes = plt.subplots(5, 1, figsize=(10, 18))
    for key, label in (("train/loss", "train"), ("eval/loss", "validation")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            axes[0].plot(
                *zip(*pts, strict=True), label=label, marker="o" if label != "train" else None
            )
    baseline = [r["eval/unigram"] for r in rows if "eval/unigram" in r]
    if baseline:
        axes[0].axhline(baseline[-1], color="gray", linestyle="--", label="unigram baseline")
    axes[0].set(xlabel="step", ylabel="loss (nats / code)", title="Training")
    axes[0].legend()
    for key, label in (("eval/text_gain_cb0", "codebook 0"), ("eval/text_gain", "mean")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            axes[1].plot(*zip(*pts, strict=True), marker="o", label=label)
    axes[1].axhline(0, color="gray", linewidth=0.5)
    axes[1].set(
        xlabel="step",
        ylabel="nats / code",
        title="Held-out text gain: loss with another sentence's text minus with its own",
    )
    axes[1].legend()
    attention = latest_attention(run)
    if attention is not None:
        image_SxT, step = attention
        axes[2].imshow(image_SxT, origin="lower", aspect="auto", cmap="viridis")
        axes[2].set(
            xlabel="decoder step",
            ylabel="text token",
            title=f"Cross-attention of a validation sentence (best head, step {step})",
        )
    for ax, wav, title in ((axes[3], reference_wav, "eSpeak NG"), (axes[4], synth_wav, "jtts")):
        spec, sr = _spectrogram(wav)
        ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=(0, spec.shape[1] * 256 / sr, 0, sr / 2000),
            vmin=spec.max() - 80,
        )
        ax.set(xlabel="seconds", ylabel="kHz", title=f"{title}: {wav.name}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run_demo(out: Path, sentences: int, steps: int) -> None:
    t0 = time.time()

    def stage(i: int, what: str) -> None:
        print(f"[{i}/5 at {(time.time() - t0) / 60:.1f} min] {what}", flush=True)

    out.mkdir(parents=True, exist_ok=True)
    stage(1, f"speaking {sentences} template sentences with eSpeak NG")
    corpus = demo_corpus.build_corpus(out / "corpus", n=sentences)
    stage(2, "extracting EnCodec codes")
    weights = extract(corpus, out / "store")
    stage(3, f"training `{CONFIG.stem}` for {steps} steps on the CPU")
    run = out / "run"
    _run(train_command(out / "store", run, steps), check=True)
    stage(4, "synthesizing three sentences the model never heard")
    held = demo_corpus.held_out(3, corpus_size=sentences)
    (out / "unseen.txt").write_text("\n".join(held) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "jtts.sample",
            "--workdir",
            str(run),
            "--text-file",
            str(out / "unseen.txt"),
            "--out-dir",
            str(out),
            "--greedy",
            "--max-seconds",
            "6",
        ],
        check=True,
    )
    stage(5, "writing the report")
    reference = out / "unseen_espeak_0001.wav"
    import soundfile as sf

    engine = demo_corpus.Espeak()
    sf.write(reference, engine.synth(held[0]), engine.sample_rate, subtype="PCM_16")
    write_report(run, reference, out / "0001.wav", out / "report.png")
    made = sorted(p.name for p in out.glob("*.wav")) + ["report.png"]
    reading = reading_summary(run)
    if reading is not None:
        print(
            f"\nDoes it read? Held-out sentences at step {reading['step']}: text gain "
            f"{reading['text_gain_cb0']:.3f} nats/code on codebook 0, {reading['text_gain']:.3f} "
            f"mean (loss with another sentence's text minus with its own; 0 = ignores text); "
            f"attention focus {reading['attn_focus']:.2f}, "
            f"monotonicity {reading['attn_monotonicity']:.2f}."
        )
    print(
        f"\nDemo finished in {(time.time() - t0) / 60:.1f} min. Made in {out}/: {', '.join(made)}"
    )
    print(
        f"Codec weights: {weights}."
        + (" (Untrained: the audio is noise-like.)" if weights == "untrained" else "")
    )
    print(_NEXT_STEPS)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("demo"))
    p.add_argument("--sentences", type=int, default=SENTENCES)
    p.add_argument("--steps", type=int, default=STEPS)
    a = p.parse_args(argv)
    run_demo(a.out, a.sentences, a.steps)


if __name__ == "__main__":
    main()
