"""`make demo`: the whole pipeline on a corpus it makes itself, with no network and no dataset.

Each stage runs the same command a user would type (printed before it runs), so the demo
doubles as a walkthrough: eSpeak NG corpus → `codec_bridge extract` → `jtts.train` (`configs/demo.yaml`)
→ `jtts.sample` on 20 unseen sentences → `codec_bridge evaluate` (offline ASR) and their
codes against eSpeak's (`code_match`) → `demo/report.png`.
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

from codec_bridge.format import CodeStore, load_codes
from jtts.code_match import match_table
from jtts.config import ModelConfig, load_config
from jtts.metrics import read_jsonl
from jtts.rundir import RunDir
from speechcorpus import grammar

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
# A codec trained by `codec_bridge train` on eSpeak NG speech, shipped with the repository
# (see codecs/README.md): used when the pretrained EnCodec weights cannot load.
DEMO_CODEC = ROOT / "codecs" / "demo_codec.pt"
# The open-vocabulary model that reads best (models/README.md), in its default speaker's voice,
# whose engine speaks the recordings it is judged beside.
SHIPPED = ROOT / "models" / "voices"
SHIPPED_VOICE = "hibari:heart"
EVERYDAY = 5  # everyday sentences it and the demo's model say at the end
SENTENCES = 2400
STEPS = 2100
UNSEEN = 20  # held-out sentences synthesized and judged


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    return subprocess.run(cmd, **kw)


def extract(corpus: Path, store: Path, weights: str | None = None, kbps: float = 6.0) -> str:
    """Codes for `corpus` in `store` with `weights`, or by default: the pretrained codec when
    it can be loaded, else the repository's demo codec, else the untrained one (loudly).
    Returns the weights used; a store that exists is resumed with the weights it records."""
    base = [sys.executable, "-m", "codec_bridge", "extract", "--format", "ljspeech"]
    base += ["--input", str(corpus), "--out", str(store), "--bandwidth", f"{kbps:g}"]
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


def train_overrides(steps: int, overrides: list[str] = ()) -> list[str]:
    """The `--set` items of `train_command`: `load_config(CONFIG, these)` is what it trains."""
    return [f"train.steps={steps}", *overrides]


def train_command(store: Path, run: Path, steps: int, overrides: list[str] = ()) -> list[str]:
    """`python -m jtts.train` with the demo config for `steps` steps (plus `overrides`)."""
    return [
        *(sys.executable, "-m", "jtts.train", "--config", str(CONFIG)),
        *("--data", str(store), "--workdir", str(run), "--set", *train_overrides(steps, overrides)),
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
    saved = RunDir(run).attention_steps()
    if not saved:
        return None
    step = max(saved)
    return np.load(saved[step]).astype(np.float32), step


def reading_summary(run: Path) -> dict[str, float] | None:
    """The last evaluation's held-out text gain (cb0 and mean) and attention figures."""
    rows = read_jsonl(RunDir(run).metrics)
    evals = [r for r in rows if "eval/text_gain" in r]
    if not evals:
        return None
    last = evals[-1]
    keys = ("text_gain", "text_gain_cb0", "null_gain", "attn_focus", "attn_monotonicity")
    return {"step": last["step"], **{k: last[f"eval/{k}"] for k in keys}}


def _training_panels(run: Path, rows: list[dict], axes) -> None:
    """Loss curves, held-out text gain and the latest attention picture, on axes 0-2."""
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


def write_report(
    run: Path, spectrograms: list[tuple[str, Path]], out: Path, table: str | None = None
) -> None:
    """Loss curves, held-out text gain, the attention of a validation sentence, the
    spectrograms of an unseen sentence (`spectrograms`: title, wav), and the intelligibility
    `table` (`codec_bridge.judge.evaluate.format_table`) under them. A folder without metrics
    (a shipped model) gets the spectrograms alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(RunDir(run).metrics)
    top = 3 if rows else 0  # a shipped model keeps no metrics: its spectrograms alone
    # The table's lines (7 pt, ~1.3 line spacing) and the last x-axis label get their own room.
    room = 0.0 if table is None else (table.count("\n") + 1) * 7 * 1.3 / 72 + 0.45
    height = 2 * top + 3 * len(spectrograms)
    fig, axes = plt.subplots(top + len(spectrograms), 1, figsize=(10, height + room), squeeze=False)
    axes = axes[:, 0]
    if top:
        _training_panels(run, rows, axes)
    for ax, (title, wav) in zip(axes[top:], spectrograms, strict=True):
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
    if table is not None:
        fig.subplots_adjust(bottom=room / fig.get_figheight(), hspace=0.5)
        fig.text(0.01, 0.005, table, family="monospace", fontsize=7, va="bottom")
    fig.savefig(out, dpi=100)
    plt.close(fig)


FRAME_RATE = 75.0  # codec frames/s of the 24 kHz EnCodec and of the demo codec


def model_config(config: Path) -> ModelConfig:
    return load_config(config).model


def cap_seconds(model: ModelConfig) -> float:
    """The longest audio the model can say: jtts.sample's cap in the demo."""
    return model.max_frames / FRAME_RATE


def codec_kbps(model: ModelConfig) -> float:
    """The codec bandwidth that gives the model's codebooks (10-bit codes)."""
    return model.n_codebooks * FRAME_RATE * 10 / 1000


def judge(out: Path, heldout: Path, synth: Path, weights: str, kbps: float) -> dict:
    """`codec_bridge evaluate` of the recordings, their resynthesis and jtts's synthesis,
    judged by pocketsphinx restricted to the demo's grammar."""
    jsgf = out / "demo.gram"
    jsgf.write_text(grammar.jsgf(), encoding="utf-8")
    report = out / "intelligibility.json"
    cmd = [sys.executable, "-m", "codec_bridge", "evaluate", "--format", "ljspeech"]
    cmd += ["--input", str(heldout), "--weights", weights, "--bandwidth", f"{kbps:g}"]
    cmd += ["--synth", str(synth), "--jsgf", str(jsgf), "--quiet"]
    cmd += ["--resynthesis-out", str(out / "resynthesis"), "--out", str(report)]
    _run(cmd, check=True)
    return json.loads(report.read_text())


def unseen_sentences(out: Path, n: int, corpus_size: int) -> tuple[list[str], Path, Path]:
    """`n` sentences of the demo grammar that a corpus of `corpus_size` lacks, spoken by eSpeak
    NG to `out`/heldout and listed in `out`/unseen.txt; returns (ids, that folder, that file).
    The ids 0001, 0002, ... are the names `jtts.sample --text-file` gives its wavs."""
    held = grammar.held_out(n, corpus_size=corpus_size)
    ids = [f"{i:04d}" for i in range(1, n + 1)]
    heldout = grammar.speak(out / "heldout", dict(zip(ids, held, strict=True)))
    texts = out / "unseen.txt"
    texts.write_text("\n".join(held) + "\n")
    return ids, heldout, texts


def sample_command(
    run: Path, texts: Path, synth: Path, codes: Path, cap_s: float, sampling: list[str] = ()
) -> list[str]:
    """`python -m jtts.sample` of each line of `texts` with the run's sampling config (plus
    `sampling` options): wavs in `synth`, codes in `codes`, at most `cap_s` seconds each."""
    cmd = [sys.executable, "-m", "jtts.sample", "--workdir", str(run), *sampling]
    cmd += ["--text-file", str(texts), "--out-dir", str(synth), "--codes-out", str(codes)]
    return [*cmd, "--max-seconds", f"{cap_s:.2f}"]


def speaking_summary(report: dict, cap_s: float) -> dict[str, float]:
    """From an intelligibility report: the share of jtts's utterances that ended before the
    length cap, and of those within 20% of eSpeak's duration for the same sentence."""
    rows = [u for u in report["utterances"] if "synthesis" in u]
    ratios = np.array([u["synthesis"]["duration_ratio"] for u in rows])
    seconds = ratios * np.array([u["seconds"] for u in rows])
    return {
        "utterances": len(rows),
        "ended": float(np.mean(seconds < cap_s - 0.05)),
        "duration_within_20pct": float(np.mean(np.abs(ratios - 1.0) <= 0.2)),
    }


def code_match(synth_codes: Path, heldout_store: Path, ids: list[str]) -> dict:
    """`code_match.match_table` of jtts's codes (`jtts.sample --codes-out`) against the codes
    of eSpeak's recordings of the same sentences (`heldout_store`, in the order of `ids`)."""
    store = CodeStore.open(heldout_store)
    generated = [load_codes(synth_codes / f"{i}.npy")[0] for i in ids]
    return match_table(generated, [store.get(i).codes for i in ids])


def everyday_command(run: Path, out: Path, n: int = EVERYDAY) -> list[str]:
    """`bench/everyday.py`: the shipped model and `run` say the first `n` everyday sentences,
    judged by Whisper beside the shipped model's voice reading them."""
    cmd = [sys.executable, str(ROOT / "bench" / "everyday.py"), "--workdir", str(SHIPPED)]
    cmd += ["--voice", SHIPPED_VOICE]
    return [*cmd, "--beside", str(run), "--n", str(n), "--work", str(out)]


def everyday_lines(result: dict) -> list[str]:
    """What `everyday_command`'s JSON says: each sentence as heard from the shipped model and
    from the demo's, and the WER of each beside the recordings' and their resynthesis'."""
    shipped, demo = result["figures"], result["beside"]["figures"]
    lines = [
        f"Everyday sentences, Whisper base: WER {shipped['wer']:.2f} for {SHIPPED.name} "
        f"(its voice {result['voice']}: recordings {shipped['wer_recordings']:.2f}, resynthesis "
        f"{shipped['wer_resynthesis']:.2f}); {demo['wer']:.2f} for the demo's grammar model."
    ]
    for own, other in zip(result["transcripts"], result["beside"]["transcripts"], strict=True):
        lines += [f"  {own['text']}", f"    {SHIPPED.name}: {own['jtts']}"]
        lines += [f"    demo model: {other['jtts']}"]
    return lines


def run_demo(out: Path, sentences: int, steps: int, unseen: int = UNSEEN) -> None:
    t0 = time.time()

    def stage(i: int, what: str) -> None:
        print(f"[{i}/7 at {(time.time() - t0) / 60:.1f} min] {what}", flush=True)

    out.mkdir(parents=True, exist_ok=True)
    stage(1, f"speaking {sentences} template sentences with eSpeak NG")
    corpus = grammar.build_corpus(out / "corpus", n=sentences)
    model = model_config(CONFIG)
    kbps = codec_kbps(model)
    stage(2, f"extracting EnCodec codes at {kbps:g} kbps")
    weights = extract(corpus, out / "store", kbps=kbps)
    stage(3, f"training `{CONFIG.stem}` for {steps} steps on the CPU")
    run = out / "run"
    _run(train_command(out / "store", run, steps), check=True)
    stage(4, f"synthesizing {unseen} sentences the model never heard")
    ids, heldout, texts = unseen_sentences(out, unseen, sentences)
    synth = out / "synth"
    cap = cap_seconds(model)
    _run(sample_command(run, texts, synth, out / "synth_codes", cap), check=True)
    stage(5, "judging speech by an offline ASR (pocketsphinx, the demo's grammar)")
    report = judge(out, heldout, synth, weights, kbps)
    extract(heldout, out / "heldout_store", weights, kbps)
    closeness = code_match(out / "synth_codes", out / "heldout_store", ids)
    (out / "code_match.json").write_text(json.dumps(closeness, indent=2) + "\n")
    stage(6, "writing the report")
    from codec_bridge.judge.evaluate import format_table

    table = format_table(report)
    first = ids[0] + ".wav"
    spectrograms = [
        ("eSpeak NG (unseen sentence)", heldout / "wavs" / first),
        ("codec resynthesis", out / "resynthesis" / first),
        ("jtts", synth / first),
    ]
    write_report(run, spectrograms, out / "report.png", table)
    reading = reading_summary(run)
    if reading is not None:
        print(
            f"\nDoes it read? Held-out sentences at step {reading['step']}: text gain "
            f"{reading['text_gain_cb0']:.3f} nats/code on codebook 0, {reading['text_gain']:.3f} "
            f"mean (loss with another sentence's text minus with its own; 0 = ignores text); "
            f"attention focus {reading['attn_focus']:.2f}, "
            f"monotonicity {reading['attn_monotonicity']:.2f}."
        )
    speaking = speaking_summary(report, cap)
    print(
        f"\nIs it understood? {unseen} unseen sentences, ASR restricted to the demo grammar:\n"
        f"{table}\n"
        f"jtts ended {speaking['ended']:.0%} of them before the {cap:.1f} s cap; "
        f"{speaking['duration_within_20pct']:.0%} are within 20% of eSpeak's duration.\n"
        f"Codebook 0 against eSpeak's own codes (DTW-aligned): {closeness['own']:.1%} of frames "
        f"match its own sentence, {closeness['mismatched']:.1%} another sentence's; "
        f"{closeness['closer_to_own']:.0%} of the utterances are closer to their own."
    )
    stage(7, f"everyday sentences: the shipped {SHIPPED.name} beside the demo's model")
    said = _run(everyday_command(run, out / "everyday"), capture_output=True, text=True)
    if said.returncode == 0:
        print("\n".join(everyday_lines(json.loads(said.stdout))))
    else:  # the demo's own result stands; say why this one is missing
        print(f"everyday sentences not judged: {(said.stderr.strip().splitlines() or ['?'])[-1]}")
    print(f"\nDemo finished in {(time.time() - t0) / 60:.1f} min. Made in {out}/: report.png, ")
    print("  synth/ (jtts), heldout/ (eSpeak), resynthesis/ (codec), intelligibility.json,")
    print("  code_match.json (jtts's codes against eSpeak's, DTW-aligned), everyday/")
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
