"""Does a multi-speaker run speak in each of its voices? Issue 26's speaker-table figures.

For each voice of the run's speaker table that the held-out manifest has (`codec_bridge join`
of held-out corpora: path,text,speaker,id), the run speaks the first `--n` of that voice's
sentences whose recording fits its context, with `jtts.sample --speaker VOICE`. Then one
`codec_bridge evaluate` judges the recordings, their resynthesis by the run's codec at its
bandwidth and jtts's speech: Whisper WER per voice, and (Resemblyzer, against `--refs`, clips
of every voice apart from those judged) the similarity to the intended voice and the nearest
voice among all of the references. The recorded voice (`--human`, LJ Speech) also reads
bench/everyday.txt, judged on its own (no recordings of it exist), and `--work`/report.png
shows one of its held-out sentences recorded, resynthesized and spoken by jtts. Prints one
JSON object with the issue's targets met or missed; work is kept in `--work` and reused.

    python bench/voices.py --workdir RUN --heldout heldout.csv --refs refs.csv --work /tmp/v
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.says_anything import claim, codec_weights  # noqa: E402
from codec_bridge.joining import speaker_slug  # noqa: E402
from codec_bridge.readers import read_corpus  # noqa: E402
from jtts import demo  # noqa: E402
from jtts.config import CFG_NULLS  # noqa: E402
from jtts.trained_run import UsageError, list_names, load_run  # noqa: E402

NEAREST_AT_LEAST = 0.95  # share of jtts's sentences whose nearest voice is the intended one
SIM_WITHIN = 0.05  # mean SIM to the intended voice, below the resynthesis's by at most this
WER_AT_MOST = 2.0  # per voice, times the resynthesis's WER
HUMAN_WER_AT_MOST = 0.15  # the human voice's WER, held-out and everyday sentences
EVERYDAY = ROOT / "bench" / "everyday.txt"


def judged(heldout: Path, voices: list[str], n: int, cap_s: float) -> dict[str, list]:
    """Per voice of `voices` that `heldout` has, the first `n` items whose recording fits
    `cap_s`, in the order of `voices`."""
    out: dict[str, list] = {}
    for it in read_corpus("manifest", heldout):
        if it.speaker not in voices:
            continue
        group = out.setdefault(it.speaker, [])
        if len(group) < n and sf.info(it.path).duration <= cap_s - 0.5:
            group.append(it)
    short = {v: len(g) for v, g in out.items() if len(g) < n}
    if short:
        raise UsageError(f"--heldout {heldout}: fewer than {n} fitting sentences for {short}")
    return {v: out[v] for v in voices if v in out}


def speak(
    workdir: Path,
    step: int,
    items: dict[str, list],
    work: Path,
    cap_s: float | dict[str, float],
    options: dict[str, list[str]] | None = None,
    tag: str = "synth",
    sampling: list[str] = (),
) -> Path:
    """Every voice's sentences spoken with that voice's `options` (default `--speaker VOICE`)
    and `sampling` (e.g. `--cfg-scale 3`) within `cap_s` seconds (one figure, or one per
    voice); `work`/`tag`/{id}.wav, and the manifest of what is judged, `work`/subset.csv."""
    synth = work / tag
    synth.mkdir(parents=True, exist_ok=True)
    rows = []
    for v, group in items.items():
        slug = speaker_slug(v)
        texts, wavs = work / f"texts_{slug}.txt", work / f"{tag}_wavs_{slug}"
        texts.write_text("".join(it.text + "\n" for it in group), encoding="utf-8")
        if not wavs.exists():
            extra = ["--step", str(step), *(options or {}).get(v, ["--speaker", v]), *sampling]
            cap = cap_s[v] if isinstance(cap_s, dict) else cap_s
            cmd = demo.sample_command(
                workdir, texts, wavs, work / f"{tag}_codes_{slug}", cap, extra
            )
            subprocess.run(cmd, check=True, cwd=ROOT, stdout=sys.stderr)
        for k, it in enumerate(group, 1):
            link = synth / f"{it.id}.wav"
            if not link.exists():
                link.symlink_to((wavs / f"{k:04d}.wav").resolve())
            rows.append((str(it.path), it.text, v, it.id))
    with open(work / "subset.csv", "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("path", "text", "speaker", "id"), *rows])
    return work / "subset.csv"


def codec_of(run) -> dict[str, Any]:
    """The run's codec weights file and bandwidth: what a bench reports and resynthesizes with."""
    return {"weights": codec_weights(run.store_meta), "kbps": float(run.store_meta["bandwidth"])}


def codec_options(codec: dict[str, Any]) -> list[str]:
    """`codec_bridge evaluate` options resynthesizing with `codec` (`codec_of`)."""
    return ["--weights", codec["weights"], "--bandwidth", f"{codec['kbps']:g}"]


def evaluate(
    subset: Path, synth: Path | None, refs: Path, out: Path, asr: str, options: list[str] = ()
) -> dict[str, Any]:
    """`codec_bridge evaluate` of `subset`'s recordings, beside `synth` when given (plus
    `options`, e.g. `codec_options`), Resemblyzer against `refs`; the report, kept in `out`."""
    if not out.exists():
        cmd = [sys.executable, "-m", "codec_bridge", "evaluate", "--format", "manifest"]
        cmd += ["--input", str(subset), "--asr", asr, *options]
        cmd += [] if synth is None else ["--synth", str(synth)]
        cmd += ["--speaker-refs", str(refs), "--quiet", "--out", str(out)]
        subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads(out.read_text(encoding="utf-8"))


def figures(report: dict[str, Any], voices: list[str]) -> dict[str, Any]:
    """Per voice and overall: WER, SIM to the intended voice and nearest-voice share of the
    recordings, the resynthesis and jtts; and the issue's three targets."""
    sets, spk = report["sets"], report["speaker"]["sets"]
    names = ("original", "resynthesis", "synthesis")
    per_voice = {
        v: {
            name: {
                "wer": sets[name]["voices"][v]["wer"],
                "sim": spk[name]["voices"][v]["sim"],
                "nearest_voice": spk[name]["voices"][v]["nearest_voice"],
            }
            for name in names
        }
        for v in voices
    }
    overall = {n: {k: spk[n][k] for k in ("sim", "nearest_voice")} for n in names}
    wer_met = {
        v: f["synthesis"]["wer"] <= WER_AT_MOST * f["resynthesis"]["wer"]
        for v, f in per_voice.items()
    }
    sim_gap = overall["resynthesis"]["sim"] - overall["synthesis"]["sim"]
    targets = {
        "nearest_voice_ge_0.95": {
            "value": overall["synthesis"]["nearest_voice"],
            "met": overall["synthesis"]["nearest_voice"] >= NEAREST_AT_LEAST,
        },
        "sim_within_0.05_of_resynthesis": {"value": sim_gap, "met": sim_gap <= SIM_WITHIN},
        "wer_le_2x_resynthesis_each_voice": {"value": wer_met, "met": all(wer_met.values())},
    }
    return {"voices": per_voice, "overall": overall, "targets": targets}


def everyday(
    workdir: Path,
    step: int,
    voice: str,
    work: Path,
    cap_s: float,
    refs: Path,
    asr: str,
    sampling: list[str] = (),
) -> dict[str, Any]:
    """`voice` reads bench/everyday.txt. No recording of these sentences exists in a voice
    without an engine (LJ's), so jtts's wavs are the corpus that evaluate judges: WER,
    transcripts nearest their own sentence, SIM to `voice` and nearest voice."""
    slug = speaker_slug(voice)
    lines = [t.strip() for t in EVERYDAY.read_text(encoding="utf-8").splitlines() if t.strip()]
    texts, wavs = work / "everyday.txt", work / f"everyday_wavs_{slug}"
    texts.write_text("".join(t + "\n" for t in lines), encoding="utf-8")  # wav k is line k
    if not wavs.exists():
        extra = ["--step", str(step), "--speaker", voice, *sampling]
        cmd = demo.sample_command(workdir, texts, wavs, work / f"everyday_codes_{slug}", cap_s)
        subprocess.run([*cmd, *extra], check=True, cwd=ROOT, stdout=sys.stderr)
    manifest = work / f"everyday_{slug}.csv"
    with open(manifest, "w", encoding="utf-8", newline="") as f:
        rows = [
            (wavs / f"{k:04d}.wav", t, voice, f"everyday-{k:04d}") for k, t in enumerate(lines, 1)
        ]
        csv.writer(f).writerows([("path", "text", "speaker", "id"), *rows])
    report = evaluate(manifest, None, refs, work / f"everyday_{slug}.json", asr)
    asr_fig, spk = report["sets"]["original"], report["speaker"]["sets"]["original"]
    return {
        "voice": voice,
        "sentences": len(lines),
        "wer": asr_fig["wer"],
        "nearest_own_sentence": asr_fig["nearest_own_text"],
        "sim": spk["sim"],
        "nearest_voice": spk["nearest_voice"],
        "taken_for": spk["voices"][voice]["taken_for"],
    }


def picture(workdir: Path, work: Path, report: dict[str, Any], voice: str, kbps: float) -> Path:
    """`work`/report.png: the run's curves, then `voice`'s first judged sentence as recorded,
    resynthesized and spoken by jtts, side by side, over the figures' table."""
    from codec_bridge.judge.evaluate import format_table

    uid = next(u["id"] for u in report["utterances"] if u.get("speaker") == voice)
    recording = Path(
        next(it.path for it in read_corpus("manifest", work / "subset.csv") if it.id == uid)
    )
    spectrograms = [
        (f"{voice}, the recording", recording),
        (f"its resynthesis ({kbps:g} kbps)", work / "resynthesis" / f"{uid}.wav"),
        (f"jtts --speaker {voice}", (work / "synth" / f"{uid}.wav").resolve()),
    ]
    demo.write_report(workdir, spectrograms, work / "report.png", format_table(report))
    return work / "report.png"


def verdict(
    workdir: Path,
    heldout: Path,
    refs: Path,
    work: Path,
    n: int = 20,
    asr: str = "whisper",
    human: str = "ljspeech",
    sampling: list[str] = (),
) -> dict[str, Any]:
    run = load_run(workdir, None)
    cap_s = run.cfg.model.max_frames / run.frame_rate
    settings = {"run": str(workdir), "step": run.step, "heldout": str(heldout), "n": n}
    claim(work, {**settings, **({"sampling": list(sampling)} if sampling else {})})
    items = judged(heldout, list_names(workdir, "speaker"), n, cap_s)
    voices = list(items)
    subset = speak(workdir, run.step, items, work, cap_s, sampling=list(sampling))
    codec = codec_of(run)
    options = [*codec_options(codec), "--resynthesis-out", str(work / "resynthesis")]
    report = evaluate(subset, work / "synth", refs, work / "report.json", asr, options)
    result = figures(report, voices)
    out = {
        "benchmark": "issue 26: the speaker table, on held-out sentences of each voice",
        "run": str(workdir),
        "step": run.step,
        "sentences_per_voice": n,
        "sampling": list(sampling),
        "codec": codec,
        **result,
        "done": all(t["met"] for t in result["targets"].values()),
    }
    if human in voices:
        out["human"] = human_figures(
            result["voices"][human],
            everyday(workdir, run.step, human, work, cap_s, refs, asr, list(sampling)),
        )
    out["picture"] = str(
        picture(workdir, work, report, human if human in voices else voices[0], codec["kbps"])
    )
    return out


def human_figures(held: dict[str, Any], daily: dict[str, Any]) -> dict[str, Any]:
    """The human voice's targets: WER <= 0.15 and <= 2x its resynthesis on its held-out
    sentences and on everyday ones, nearest voice itself for >= 95% of both."""
    resynth = held["resynthesis"]["wer"]
    cap = min(HUMAN_WER_AT_MOST, WER_AT_MOST * resynth)
    n_held = held["synthesis"]["nearest_voice"]
    return {
        "heldout": held,
        "everyday": daily,
        "targets": {
            "heldout_wer": {
                "value": held["synthesis"]["wer"],
                "at_most": cap,
                "met": held["synthesis"]["wer"] <= cap,
            },
            "everyday_wer": {"value": daily["wer"], "at_most": cap, "met": daily["wer"] <= cap},
            "nearest_voice": {
                "value": {"heldout": n_held, "everyday": daily["nearest_voice"]},
                "met": min(n_held, daily["nearest_voice"]) >= NEAREST_AT_LEAST,
            },
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="multi-speaker run or model")
    p.add_argument("--heldout", type=Path, required=True, help="manifest with a speaker column")
    p.add_argument("--refs", type=Path, required=True, help="reference clips of every voice")
    p.add_argument("--n", type=int, default=20, help="sentences per voice")
    p.add_argument("--work", type=Path, default=Path("/tmp/jtts-voices"), help="kept, reused")
    p.add_argument("--asr", default="whisper", help="codec_bridge evaluate --asr")
    p.add_argument(
        "--human", default="ljspeech", help="the recorded voice: also reads everyday.txt"
    )
    p.add_argument("--cfg-scale", type=float, help="jtts.sample --cfg-scale for every voice")
    p.add_argument("--cfg-null", choices=CFG_NULLS, help="jtts.sample --cfg-null for every voice")
    p.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        help="jtts.sample --follow (or --no-follow) for every voice",
    )
    a = p.parse_args(argv)
    sampling = [] if a.cfg_scale is None else ["--cfg-scale", f"{a.cfg_scale:g}"]
    sampling += [] if a.cfg_null is None else ["--cfg-null", a.cfg_null]
    sampling += [] if a.follow is None else ["--follow" if a.follow else "--no-follow"]
    try:
        out = verdict(a.workdir, a.heldout, a.refs, a.work, a.n, a.asr, a.human, sampling)
        print(json.dumps(out, indent=1))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
