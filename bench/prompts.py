"""Does a voice prompt set the voice? Issue 26's voice-prompt figures.

For each voice of the held-out manifest that the run's speaker table lacks, the first clip of
that voice in `--prompts` lasting 1-5 s is its prompt, read with its transcript
(`jtts.sample --prompt-wav P --prompt-text T`, no `--speaker`: a codec-code prefix fed once
through prefill, VALL-E style). The run speaks the voice's first `--n` held-out sentences
that fit its context beside the prompt, then the same sentences without a prompt, in the table
voice nearest the held-out voice's recordings (what a user without a prompt would choose: the
stronger baseline, since the speaker's null voice is nobody's). `codec_bridge evaluate` judges
both beside the recordings and their resynthesis: Whisper WER, Resemblyzer SIM to the prompt's
voice and the nearest voice among all of `--refs` (table and held-out voices). Prints one JSON
object with the issue's targets met or missed; work is kept in `--work` and reused.

    python bench/prompts.py --workdir RUN --heldout heldout.csv --refs refs.csv \
        --prompts prompts.csv --work /tmp/p
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.says_anything import claim  # noqa: E402
from bench.voices import codec_of, codec_options, evaluate, judged, speak  # noqa: E402
from codec_bridge.readers import read_corpus  # noqa: E402
from jtts.trained_run import UsageError, list_names, load_run  # noqa: E402

PROMPT_SECONDS = (1.0, 5.0)  # the prompts: at most 5 s (and the sampler's 1 s floor)
NEAREST_AT_LEAST = 0.80  # share of prompted sentences whose nearest voice is the prompt's
SIM_GAIN = 0.10  # mean SIM to the prompt's voice above the same sentences without a prompt
WER_AT_MOST = 2.0  # per voice, times the resynthesis's WER
# the ceiling's sets of the evaluate report: (this bench's name, the report's)
CEILING = (("recordings", "original"), ("resynthesis", "resynthesis"))


def prompts(path: Path, voices: list[str], avoid: set[str]) -> dict[str, Any]:
    """Per voice, the first item of `path` lasting PROMPT_SECONDS whose audio is not in
    `avoid` (the judged sentences and the references)."""
    lo, hi = PROMPT_SECONDS
    out: dict[str, Any] = {}
    for it in read_corpus("manifest", path):
        fresh = it.speaker in voices and it.speaker not in out
        if fresh and str(it.path.resolve()) not in avoid and lo <= sf.info(it.path).duration <= hi:
            out[it.speaker] = it
    missing = [v for v in voices if v not in out]
    if missing:
        raise UsageError(f"--prompts {path}: no clip of {lo:g}-{hi:g} s for {missing}")
    return out


def nearest_table_voice(report: dict[str, Any], voice: str, table: list[str]) -> str:
    """The table voice whose references are nearest, on average, `voice`'s recordings."""
    sims = [
        u["original"]["sims"]
        for u in report["utterances"]
        if u.get("speaker") == voice and u["original"].get("sims")
    ]
    if not sims:
        raise UsageError(f"no voiced recording of {voice} to find its nearest table voice")
    return max(table, key=lambda t: float(np.mean([s[t] for s in sims])))


def figures(prompted: dict[str, Any], plain: dict[str, Any], voices: list[str]) -> dict[str, Any]:
    """Per voice and overall, with and without the prompt: WER, SIM to the prompt's voice,
    nearest voice; the recordings' and resynthesis's WER, SIM and nearest voice (the
    resynthesis's are roughly the most a decode through this codec can reach: where the judge
    takes the codec's own copy of a voice for another, no prompt is likely to be heard as it);
    and the issue's three targets."""
    spk_p, spk_0 = prompted["speaker"]["sets"]["synthesis"], plain["speaker"]["sets"]["synthesis"]
    sets, spk = prompted["sets"], prompted["speaker"]["sets"]
    per_voice = {
        v: {
            "recordings_wer": sets["original"]["voices"][v]["wer"],
            "resynthesis_wer": sets["resynthesis"]["voices"][v]["wer"],
            **{
                f"{name}_{key}": spk[kind]["voices"][v][key]
                for name, kind in CEILING
                for key in ("sim", "nearest_voice")
            },
            "prompted": {
                "wer": sets["synthesis"]["voices"][v]["wer"],
                "sim": spk_p["voices"][v]["sim"],
                "nearest_voice": spk_p["voices"][v]["nearest_voice"],
                "taken_for": spk_p["voices"][v]["taken_for"],
            },
            "without_prompt": {
                "wer": plain["sets"]["synthesis"]["voices"][v]["wer"],
                "sim": spk_0["voices"][v]["sim"],
                "taken_for": spk_0["voices"][v]["taken_for"],
            },
        }
        for v in voices
    }
    gain = spk_p["sim"] - spk_0["sim"]
    wer_met = {
        v: f["prompted"]["wer"] <= WER_AT_MOST * f["resynthesis_wer"] for v, f in per_voice.items()
    }
    targets = {
        "nearest_voice_ge_0.80": {
            "value": spk_p["nearest_voice"],
            "met": spk_p["nearest_voice"] >= NEAREST_AT_LEAST,
        },
        "sim_gain_ge_0.10": {"value": gain, "met": gain >= SIM_GAIN},
        "wer_le_2x_resynthesis_each_voice": {"value": wer_met, "met": all(wer_met.values())},
    }
    overall = {
        name: {"sim": spk[kind]["sim"], "nearest_voice": spk[kind]["nearest_voice"]}
        for name, kind in CEILING
    } | {
        "prompted": {"sim": spk_p["sim"], "nearest_voice": spk_p["nearest_voice"]},
        "without_prompt": {"sim": spk_0["sim"], "nearest_voice": spk_0["nearest_voice"]},
    }
    return {"voices": per_voice, "overall": overall, "targets": targets}


def verdict(
    workdir: Path,
    heldout: Path,
    refs: Path,
    prompt_clips: Path,
    work: Path,
    n: int = 20,
    asr: str = "whisper",
) -> dict[str, Any]:
    run = load_run(workdir, None)
    cap_s = run.cfg.model.max_frames / run.frame_rate
    table = list_names(workdir, "speaker")
    claim(work, {"run": str(workdir), "step": run.step, "heldout": str(heldout), "n": n})
    others = {it.speaker for it in read_corpus("manifest", heldout)} - set(table)
    if not others:
        raise UsageError(f"--heldout {heldout}: every voice is in the run's table")
    items = judged(heldout, sorted(others), n, cap_s - PROMPT_SECONDS[1])
    voices = list(items)
    avoid = {str(it.path.resolve()) for g in items.values() for it in g}
    avoid |= {str(it.path.resolve()) for it in read_corpus("manifest", refs)}
    clips = prompts(prompt_clips, voices, avoid)
    seconds = {v: sf.info(clips[v].path).duration for v in voices}
    caps = {v: cap_s - seconds[v] for v in voices}
    options = {
        v: ["--prompt-wav", str(clips[v].path), "--prompt-text", clips[v].text] for v in voices
    }
    subset = speak(workdir, run.step, items, work, caps, options, tag="prompted")
    codec = codec_of(run)
    prompted = evaluate(
        subset, work / "prompted", refs, work / "prompted.json", asr, codec_options(codec)
    )
    nearest = {v: nearest_table_voice(prompted, v, table) for v in voices}
    options = {v: ["--speaker", nearest[v]] for v in voices}
    speak(workdir, run.step, items, work, caps, options, tag="plain")
    plain = evaluate(subset, work / "plain", refs, work / "plain.json", asr)
    result = figures(prompted, plain, voices)
    return {
        "benchmark": "issue 26: voice prompts of voices the run never heard",
        "run": str(workdir),
        "step": run.step,
        "sentences_per_voice": n,
        "prompts": {
            v: {"clip": str(c.path), "text": c.text, "seconds": seconds[v]}
            for v, c in clips.items()
        },
        "without_prompt_speaker": nearest,
        "codec": codec,
        **result,
        "done": all(t["met"] for t in result["targets"].values()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="multi-speaker run or model")
    p.add_argument("--heldout", type=Path, required=True, help="held-out voices' sentences")
    p.add_argument("--refs", type=Path, required=True, help="reference clips of every voice")
    p.add_argument("--prompts", type=Path, required=True, help="clips to prompt with, per voice")
    p.add_argument("--n", type=int, default=20, help="sentences per voice")
    p.add_argument("--work", type=Path, default=Path("/tmp/jtts-prompts"), help="kept, reused")
    p.add_argument("--asr", default="whisper", help="codec_bridge evaluate --asr")
    a = p.parse_args(argv)
    try:
        out = verdict(a.workdir, a.heldout, a.refs, a.prompts, a.work, a.n, a.asr)
        print(json.dumps(out, indent=1))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
