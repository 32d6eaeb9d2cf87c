"""Which text front end says words it never heard: an ablation on open-vocabulary speech.

Every candidate trains the demo's model and recipe (`configs/demo.yaml`, with a decoder
context of `--context` frames, 8 s by default) on the same codes, for the same steps, and
differs only in its text front end: the Whisper token's embedding table, the token's spelling
(`jtts.spelling`), or both; or one position per byte of the tokens' spelling (`bytes`, alone
or plus the token's table row). The codes: GCIDE train sentences (`speechcorpus`), with
`--grammar` template sentences among them, spoken by one voice, through the demo codec at its
bandwidth. Each candidate then speaks `--judge` held-out sentences of two kinds:
`seen`, whose words all occur in the training text, and `unseen`, each with a word that no
training sentence has (speechcorpus's unseen subset); Whisper base (`codec_bridge evaluate
--asr whisper`, or `--asr` given) judges them beside the recordings and their codec
resynthesis. Only sentences whose recording fits the model's context are judged. A run
already under `--work` with the same config is reused. Prints one JSON object.

    python bench/frontend.py --work /tmp/jtts-frontend                # 4000 sentences, 3000 steps
    python bench/frontend.py --only table,both --judge 100 --steps 3000
    python bench/frontend.py --work /tmp/jtts-mix --grammar 2000 --context 400 --only bytes,table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jtts import demo  # noqa: E402
from jtts.config import config_diff, load_config  # noqa: E402
from jtts.rundir import RunDir  # noqa: E402
from speechcorpus.builder import build_split, read_manifest, write_manifest  # noqa: E402

BYTES = ["model.text_units=bytes", "model.max_text_len=256"]  # GCIDE sentences: <= ~200 bytes
CANDIDATES = {
    **{mode: [f"model.text_embed={mode}"] for mode in ("table", "spelling", "both")},
    "bytes": [*BYTES, "model.text_embed=none"],
    "bytes_table": [*BYTES, "model.text_embed=table"],
}
CONTEXT_FRAMES = 600  # 8 s at 75 frames/s: most GCIDE sentences; longer ones are dropped


def settings(context: int) -> list[str]:
    """What every candidate shares besides the demo's recipe: a `context`-frame decoder
    (longer utterances dropped) and no samples or TensorBoard during training."""
    return [
        f"model.max_frames={context}",
        f"data.max_frames={context}",
        "data.crop_mode=drop",
        "eval.num_samples=0",
        "log.tensorboard=false",
    ]


UNSEEN = 250  # speechcorpus's default unseen subset: the first 250 held-out sentences


def judged_subset(out: Path, heldout: Path, ids: list[str], texts: dict[str, str]) -> Path:
    """`out`: an LJ Speech folder of the held-out `ids` renamed 0001, 0002, ... (the names
    `jtts.sample --text-file` gives its wavs) and of its voice, and `out`/texts.txt to speak."""
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    rows = []
    for n, utt in enumerate(ids, 1):
        link = out / "wavs" / f"{n:04d}.wav"
        if not link.exists():
            link.symlink_to((heldout / "wavs" / f"{utt}.wav").resolve())
        rows.append(f"{n:04d}|{texts[utt]}|{texts[utt]}\n")
    (out / "metadata.csv").write_text("".join(rows), encoding="utf-8")
    (out / "texts.txt").write_text("".join(texts[u] + "\n" for u in ids), encoding="utf-8")
    if voice := read_manifest(heldout).get("voice"):  # the judge's speaker label
        write_manifest(out, {"voice": voice})
    return out


def pick(
    heldout: Path, n: int, cap_s: float, n_unseen: int = UNSEEN
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The first `n` held-out ids of each kind whose recording fits in `cap_s`, and all texts;
    the first `n_unseen` held-out sentences are the unseen-word kind."""
    texts = {}
    for row in (heldout / "metadata.csv").read_text(encoding="utf-8").splitlines():
        utt, text, _ = row.split("|")
        texts[utt] = text
    fits = [u for u in texts if sf.info(heldout / "wavs" / f"{u}.wav").duration <= cap_s - 0.5]
    kinds = {
        "unseen": [u for u in fits if int(u.split("-")[1]) < n_unseen][:n],
        "seen": [u for u in fits if int(u.split("-")[1]) >= n_unseen][:n],
    }
    return kinds, texts


def evaluation(out: Path, subset: Path, synth: Path, weights: str, kbps: float, asr: str) -> dict:
    """`codec_bridge evaluate`'s whole report on `subset` (recordings, their resynthesis by
    `weights` at `kbps`, and `synth`), judged by `asr`; kept in `out`/report.json and reused."""
    report = out / "report.json"
    if not report.exists():
        cmd = [sys.executable, "-m", "codec_bridge", "evaluate", "--format", "ljspeech"]
        cmd += ["--input", str(subset), "--weights", weights, "--bandwidth", f"{kbps:g}"]
        cmd += ["--synth", str(synth), "--asr", asr, "--quiet", "--out", str(report)]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=sys.stderr)
    return json.loads(report.read_text())


def judge(out: Path, subset: Path, synth: Path, weights: str, kbps: float, asr: str) -> dict:
    sets = evaluation(out, subset, synth, weights, kbps, asr)["sets"]
    return {
        name: {k: round(sets[name][k], 4) for k in ("wer", "cer", "nearest_own_text")}
        for name in ("original", "resynthesis", "synthesis")
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/jtts-frontend"))
    p.add_argument("--voice", default="espeak:en-us")
    p.add_argument("--sentences", type=int, default=4000)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument(
        "--grammar", type=int, default=0, help="template sentences added to the training corpus"
    )
    p.add_argument("--weights", default=None, help="codec for the codes (default: the demo's)")
    p.add_argument("--only", default=None, help="comma-separated candidates")
    p.add_argument("--judge", type=int, default=100, help="sentences of each kind judged")
    p.add_argument("--context", type=int, default=CONTEXT_FRAMES, help="decoder frames")
    p.add_argument("--asr", default="whisper")
    a = p.parse_args()
    names = a.only.split(",") if a.only else list(CANDIDATES)
    if unknown := [n for n in names if n not in CANDIDATES]:
        p.error(f"unknown {', '.join(unknown)}: choose from {', '.join(CANDIDATES)}")
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stdout carries the JSON alone
    train = build_split(a.work / "train", a.voice, "train", a.sentences, grammar=a.grammar)
    build_split(a.work / "heldout", a.voice, "heldout")
    kbps = demo.codec_kbps(demo.model_config(demo.CONFIG))
    weights = demo.extract(a.work / "train", a.work / "store", a.weights, kbps=kbps)
    cap_s = a.context / demo.FRAME_RATE
    kinds, texts = pick(a.work / "heldout", a.judge, cap_s)
    subsets = {
        k: judged_subset(a.work / "judge" / k, a.work / "heldout", ids, texts)
        for k, ids in kinds.items()
    }
    results = {}
    for name in names:
        run = a.work / f"run_{name}"
        config = RunDir(run).config
        overrides = [*settings(a.context), *CANDIDATES[name]]
        planned = load_config(demo.CONFIG, demo.train_overrides(a.steps, overrides))
        if not config.exists():
            subprocess.run(
                demo.train_command(a.work / "store", run, a.steps, overrides), check=True, cwd=ROOT
            )
        if differ := config_diff(load_config(config), planned):
            sys.exit(f"{run}: trained with another {', '.join(differ)}; give another --work")
        results[name] = {"reading": demo.reading_summary(run)}
        for kind, subset in subsets.items():
            out = a.work / "judge" / name / kind
            synth = out / "synth"
            if not synth.exists():
                cmd = demo.sample_command(run, subset / "texts.txt", synth, out / "codes", cap_s)
                subprocess.run(cmd, check=True, cwd=ROOT)
            results[name][kind] = judge(out, subset, synth, weights, kbps, a.asr)
    print(
        json.dumps(
            {
                "benchmark": "text front ends on held-out open-vocabulary sentences",
                "corpus": {
                    "voice": a.voice,
                    "sentences": train["sentences"],
                    "template_sentences": a.grammar,
                    "hours": round(train["hours"], 2),
                    "codec": weights,
                    "kbps": kbps,
                },
                "judged": {k: len(v) for k, v in kinds.items()},
                "steps": a.steps,
                "context_frames": a.context,
                "asr": a.asr,
                "candidates": {n: CANDIDATES[n] for n in names},
                "results": results,
            },
            indent=1,
        ),
        file=json_out,
        flush=True,
    )


if __name__ == "__main__":
    main()
