"""`make demo`: the whole pipeline on a corpus it makes itself, with no network and no dataset.

Each stage runs the same command a user would type (printed before it runs), so the demo
doubles as a walkthrough: eSpeak NG corpus → `codec_bridge extract` → `jtts.train` (`small`)
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


# Short, similar-length sentences: few length buckets (few compiles), frequent logs and evals.
DEMO_OVERRIDES = [
    "data.num_buckets=2",
    "data.batch_frames=1024",
    "data.val_fraction=0.03",
    "optim.warmup_steps=50",
    "log.every=10",
    "eval.every=100",
    "eval.batches=2",
    "eval.num_samples=1",
    "checkpoint.every=100",
]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    return subprocess.run(cmd, **kw)


def _extract(corpus: Path, store: Path) -> str:
    """Codes with the pretrained codec when it can be loaded, else the untrained one (loudly)."""
    base = [
        sys.executable,
        "-m",
        "codec_bridge",
        "extract",
        "--format",
        "ljspeech",
        "--input",
        str(corpus),
        "--out",
        str(store),
        "--bandwidth",
        "6",
    ]
    if (store / "meta.json").exists():
        record = json.loads((store / "meta.json").read_text())["weights"]
        weights = record["path"] if record["kind"] == "file" else record["kind"]
        _run([*base, "--weights", weights], check=True)
        return record["kind"]
    if _run([*base, "--weights", "pretrained"]).returncode == 0:
        return "pretrained"
    print(_NO_PRETRAINED, file=sys.stderr, flush=True)
    _run([*base, "--weights", "untrained", "--seed", "0"], check=True)
    return "untrained"


def _spectrogram(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    x = audio.mean(axis=1)
    n_fft, hop = 1024, 256
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (0, n_fft)), n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2
    return 10 * np.log10(power.T + 1e-10), sr


def write_report(run: Path, reference_wav: Path, synth_wav: Path, out: Path) -> None:
    """Loss curves and the spectrograms of a sentence spoken by eSpeak NG and by jtts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    fig, axes = plt.subplots(3, 1, figsize=(10, 11))
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
    for ax, wav, title in ((axes[1], reference_wav, "eSpeak NG"), (axes[2], synth_wav, "jtts")):
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
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/5] speaking {sentences} template sentences with eSpeak NG", flush=True)
    corpus = demo_corpus.build_corpus(out / "corpus", n=sentences)
    print("[2/5] extracting EnCodec codes", flush=True)
    weights = _extract(corpus, out / "store")
    print(f"[3/5] training `small` for {steps} steps on the CPU", flush=True)
    run = out / "run"
    _run(
        [
            sys.executable,
            "-m",
            "jtts.train",
            "--config",
            "configs/small.yaml",
            "--data",
            str(out / "store"),
            "--workdir",
            str(run),
            "--set",
            f"train.steps={steps}",
            *DEMO_OVERRIDES,
        ],
        check=True,
    )
    print("[4/5] synthesizing three sentences the model never heard", flush=True)
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
    print("[5/5] writing the report", flush=True)
    reference = out / "unseen_espeak_0001.wav"
    import soundfile as sf

    engine = demo_corpus.Espeak()
    sf.write(reference, engine.synth(held[0]), engine.sample_rate, subtype="PCM_16")
    write_report(run, reference, out / "0001.wav", out / "report.png")
    made = sorted(p.name for p in out.glob("*.wav")) + ["report.png"]
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
    p.add_argument("--sentences", type=int, default=300)
    p.add_argument("--steps", type=int, default=400)
    a = p.parse_args(argv)
    run_demo(a.out, a.sentences, a.steps)


if __name__ == "__main__":
    main()
