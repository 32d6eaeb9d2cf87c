"""Does a trained run say anything? Issue 25's "Done when" figures for one run, in one command.

The run speaks `--n` held-out sentences of a speechcorpus held-out corpus (`python -m
speechcorpus build --split heldout`, LJ layout with its recordings), `--unseen` of them from its
unseen-word subset (each has a word no training sentence has) and the rest from the others,
only sentences whose recording fits the model's context. `codec_bridge evaluate --asr whisper`
judges jtts's speech beside the recordings and their resynthesis by the codec of the run's
code store at its bandwidth (`bench/frontend.py` builds the subset and runs both). From the
report's utterance rows and `jtts.sample`'s codes sidecars, for all sentences and for the
unseen-word ones apart: WER of each set, jtts over resynthesis, the share of transcripts
nearest their own sentence (among the group's), ended by EOS, and within 25% of the
recording's duration; each target of the issue met or missed; and the share of the unseen
sentences' words that the run's training transcripts lack. Work is kept in `--work` and
reused. Prints one JSON object.

    python bench/says_anything.py --workdir RUN --heldout DIR --work /tmp/jtts-verdict
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.frontend import evaluation, judged_subset, pick  # noqa: E402
from codec_bridge.format import CodeStore, load_codes, weights_file  # noqa: E402
from codec_bridge.judge.evaluate import error_rates, nearest_own_text  # noqa: E402
from jtts import demo  # noqa: E402
from jtts.trained_run import UsageError, choose_categories, load_run  # noqa: E402
from speechcorpus.builder import read_manifest  # noqa: E402
from speechcorpus.sentences import unseen_share  # noqa: E402

DURATION_TOLERANCE = 0.25  # a synthesis "as long as" its recording: within +-25%
# Issue 25's "Done when": (group, figure, bound, at most?) per target.
TARGETS = {
    "wer_le_2x_resynthesis": ("heldout", "synthesis_over_resynthesis", 2.0, True),
    "wer_le_0.10": ("heldout", "wer", 0.10, True),
    "unseen_wer_le_0.15": ("unseen", "wer", 0.15, True),
    "nearest_own_text_ge_0.98": ("heldout", "nearest_own_text", 0.98, False),
    "eos_all": ("heldout", "eos", 1.0, False),
    "duration_within_25pct_ge_0.90": ("heldout", "duration_within_25pct", 0.90, False),
}


def codec_weights(store_meta: dict[str, Any]) -> str:
    """`codec_bridge evaluate --weights` for the codec a run's store records."""
    path = weights_file(store_meta)
    return "pretrained" if path is None else str(path)


def absent_share(texts: list[str], store_meta: dict[str, Any]) -> float | None:
    """The share of `texts`' words that no transcript of the run's training code store has;
    None when that store is not here (a shipped model names none)."""
    store = store_meta.get("store_dir")
    if not store or not Path(store).is_dir():
        return None
    return unseen_share(texts, [r["text"] for r in CodeStore.open(store).records()])


def group_figures(rows: list[dict], eos: list[bool], normalizer: str) -> dict[str, Any]:
    """A group's figures from `codec_bridge evaluate` utterance rows and the EOS of each."""
    refs = [r["text"] for r in rows]
    wer = {
        name: error_rates(refs, [r[name]["hyp"] for r in rows], normalizer)["wer"]
        for name in ("original", "resynthesis", "synthesis")
    }
    ratios = np.array([r["synthesis"]["duration_ratio"] for r in rows])
    hyps = [r["synthesis"]["hyp"] for r in rows]
    return {
        "sentences": len(rows),
        "wer": wer["synthesis"],
        "wer_recordings": wer["original"],
        "wer_resynthesis": wer["resynthesis"],
        "synthesis_over_resynthesis": (
            wer["synthesis"] / wer["resynthesis"] if wer["resynthesis"] else None
        ),
        "nearest_own_text": nearest_own_text(refs, hyps, normalizer),
        "eos": float(np.mean(eos)),
        "duration_within_25pct": float(np.mean(np.abs(ratios - 1.0) <= DURATION_TOLERANCE)),
    }


def judgments(groups: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each target's figure, bound and whether it is met. The WER ratio is judged as
    WER <= 2x resynthesis WER, so it is judged even when resynthesis makes no error."""
    out = {}
    for name, (group, figure, bound, at_most) in TARGETS.items():
        g = groups[group]
        value = g[figure]
        if figure == "synthesis_over_resynthesis":
            met = g["wer"] <= bound * g["wer_resynthesis"]
        else:
            met = value <= bound if at_most else value >= bound
        out[name] = {"group": group, "value": value, "bound": bound, "met": bool(met)}
    return out


def _held_out(heldout: Path, n: int, unseen: int, cap_s: float) -> tuple[list[str], int, dict]:
    """The ids judged (the unseen-word ones first) and how many are unseen-word, and the texts."""
    try:
        manifest = read_manifest(heldout)
    except ValueError as e:
        raise UsageError(f"--heldout {e}") from None
    if manifest.get("split") != "heldout" or not (heldout / "metadata.csv").is_file():
        raise UsageError(
            f"--heldout {heldout}: not a speechcorpus held-out corpus (no corpus.json with "
            '"split": "heldout", or no metadata.csv); build one with python -m speechcorpus '
            "build --split heldout"
        )
    kinds, texts = pick(heldout, max(unseen, n - unseen), cap_s, manifest["n_unseen"])
    for kind, want in (("unseen", unseen), ("seen", n - unseen)):
        if len(kinds[kind]) < want:
            raise UsageError(
                f"--heldout {heldout}: only {len(kinds[kind])} {kind}-word sentences have a "
                f"recording that fits the model's {cap_s:.1f} s, {want} asked; lower --n/--unseen"
            )
    return kinds["unseen"][:unseen] + kinds["seen"][: n - unseen], unseen, texts


def claim(work: Path, settings: dict[str, Any]) -> None:
    """Records what `work` judges; a `work` that judged something else is a UsageError."""
    path = work / "verdict.json"
    if path.exists() and json.loads(path.read_text(encoding="utf-8")) != settings:
        raise UsageError(f"--work {work} holds another verdict ({path}); choose another --work")
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings) + "\n", encoding="utf-8")


def verdict(
    workdir: Path,
    heldout: Path,
    work: Path,
    n: int = 200,
    unseen: int = 100,
    asr: str = "whisper",
    step: int | None = None,
    speaker: str | None = None,
) -> dict[str, Any]:
    """Samples, judges and sums up `workdir` (its best checkpoint, or `step`'s; in `speaker`'s
    voice for a run with a speaker table) on `heldout` (see the module docstring)."""
    if not 0 < unseen <= n:
        raise UsageError(f"--unseen {unseen}: give 1 to --n ({n}) unseen-word sentences")
    run = load_run(workdir, step)
    choose_categories(run.cfg, {"speaker": speaker}, workdir)  # a wrong --speaker fails here
    meta = run.store_meta
    cap_s = run.cfg.model.max_frames / run.frame_rate
    ids, n_unseen, texts = _held_out(heldout, n, unseen, cap_s)
    settings = {"run": str(workdir), "step": run.step, "heldout": str(heldout), "n": n}
    claim(work, {**settings, "unseen": unseen, "asr": asr, "speaker": speaker})
    subset = judged_subset(work / "subset", heldout, ids, texts)
    synth, codes = work / "synth", work / "codes"
    if not synth.exists():
        sampling = ["--step", str(run.step), *(["--speaker", speaker] if speaker else [])]
        cmd = demo.sample_command(workdir, subset / "texts.txt", synth, codes, cap_s, sampling)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=sys.stderr)
    weights, kbps = codec_weights(meta), float(meta["bandwidth"])
    report = evaluation(work, subset, synth, weights, kbps, asr)
    rows = report["utterances"]
    eos = [load_codes(codes / f"{r['id']}.npy")[1]["eos"] for r in rows]
    normalizer = report["asr"]["normalizer"]
    groups = {
        "heldout": group_figures(rows, eos, normalizer),
        "unseen": group_figures(rows[:n_unseen], eos[:n_unseen], normalizer),
    }
    share = absent_share([texts[i] for i in ids[:n_unseen]], meta)
    if share is not None:
        groups["unseen"]["words_absent_from_training"] = share
    targets = judgments(groups)
    return {
        "benchmark": "issue 25: says anything, on held-out sentences",
        "run": str(workdir),
        "step": run.step,
        "speaker": speaker,
        "heldout": str(heldout),
        "asr": {k: report["asr"].get(k) for k in ("engine", "model", "normalizer")},
        "codec": {"weights": weights, "kbps": kbps},
        "cap_s": round(cap_s, 2),
        "groups": groups,
        "targets": targets,
        "done": all(t["met"] for t in targets.values()),
    }


def verdict_arguments(p: argparse.ArgumentParser, work: str) -> None:
    """The options of `verdict` (all but the step), for this bench and those built on it."""
    p.add_argument("--workdir", type=Path, required=True, help="the trained run")
    p.add_argument("--heldout", type=Path, required=True, help="speechcorpus held-out corpus")
    p.add_argument("--n", type=int, default=200, help="held-out sentences judged")
    p.add_argument("--unseen", type=int, default=100, help="of them from the unseen-word subset")
    p.add_argument("--work", type=Path, default=Path(work), help="kept, reused")
    p.add_argument("--asr", default="whisper", help="codec_bridge evaluate --asr")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verdict_arguments(p, "/tmp/jtts-verdict")
    p.add_argument("--step", type=int, default=None, help="checkpoint (default: the best)")
    p.add_argument("--speaker", help="the voice to speak in (runs trained with a speaker table)")
    a = p.parse_args(argv)
    try:
        result = verdict(a.workdir, a.heldout, a.work, a.n, a.unseen, a.asr, a.step, a.speaker)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
