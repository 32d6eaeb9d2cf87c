"""Minutes to intelligible: held-out Whisper WER of every saved checkpoint of one run.

Each checkpoint step (all of them, or `--steps`) gets `bench/says_anything.py`'s verdict on the
same held-out sentences (its work kept in `--work`/step_N and reused), beside the training
minutes spent to reach it: the sum of the logged mean step times (`train/step_time_s` in
metrics.jsonl, so compilation, evaluation and the time between resumed sessions are left
out). "Intelligible" is the first step whose WER is at most twice that of the codec's
resynthesis of the recordings (issue 25's relative target) and whose transcripts are nearest
their own sentence for at least 90%: where the resynthesis itself is hard to follow (eSpeak
reading literary GCIDE through a 1.5 kbps codec: WER 0.53) twice its WER is babble. Prints one JSON object and, with
`--plot`, draws WER (all and unseen-word sentences, resynthesis as a line) against minutes.

    python bench/learning_curve.py --workdir RUN --heldout DIR --n 40 --unseen 20 --plot curve.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.says_anything import verdict, verdict_arguments  # noqa: E402
from jtts.rundir import RunDir  # noqa: E402
from jtts.trained_run import UsageError  # noqa: E402

NEAREST_OWN = 0.90  # an ASR that tells which sentence was said, for 9 in 10 of them


def training_minutes(metrics: Path) -> dict[int, float]:
    """Cumulative training minutes at each logged step, from the mean step time of each log
    interval; a step logged again after a resume counts once (its last row)."""
    rows: dict[int, float] = {}
    for line in metrics.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("train/step_time_s") is not None:
            rows[int(row["step"])] = float(row["train/step_time_s"])
    minutes, total, last = {}, 0.0, 0
    for step in sorted(rows):
        total += rows[step] * (step - last) / 60.0
        minutes[step], last = total, step
    return minutes


def point(result: dict[str, Any], minutes: float | None) -> dict[str, Any]:
    """One checkpoint's row of the curve."""
    h, u = result["groups"]["heldout"], result["groups"]["unseen"]
    return {
        "step": result["step"],
        "minutes": None if minutes is None else round(minutes, 1),
        "wer": round(h["wer"], 4),
        "wer_unseen": round(u["wer"], 4),
        "wer_resynthesis": round(h["wer_resynthesis"], 4),
        "nearest_own_text": round(h["nearest_own_text"], 4),
        "intelligible": bool(result["targets"]["wer_le_2x_resynthesis"]["met"])
        and h["nearest_own_text"] >= NEAREST_OWN,
    }


def plot(curve: list[dict[str, Any]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [p["minutes"] if p["minutes"] is not None else p["step"] for p in curve]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, [p["wer"] for p in curve], "o-", label="jtts, held-out")
    ax.plot(x, [p["wer_unseen"] for p in curve], "s--", label="jtts, unseen-word")
    ax.plot(x, [p["wer_resynthesis"] for p in curve], ":", label="codec resynthesis")
    ax.set_xlabel("training minutes" if curve[0]["minutes"] is not None else "step")
    ax.set_ylabel("Whisper base WER")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verdict_arguments(p, "/tmp/jtts-curve")  # judged alike at each step
    p.add_argument("--steps", default=None, help="comma-separated steps (default: every saved)")
    p.add_argument("--plot", type=Path, default=None, help="PNG of WER against minutes")
    a = p.parse_args(argv)
    run = RunDir(a.workdir)
    steps = [int(s) for s in a.steps.split(",")] if a.steps else run.saved_steps()
    if not steps:
        print(f"error: --workdir {a.workdir}: no checkpoints", file=sys.stderr)
        return 2
    minutes = training_minutes(run.metrics) if run.metrics.exists() else {}
    curve = []
    try:
        for step in steps:
            work = a.work / f"step_{step}"
            result = verdict(a.workdir, a.heldout, work, a.n, a.unseen, a.asr, step)
            curve.append(point(result, minutes.get(step)))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    first = next((p for p in curve if p["intelligible"]), None)
    result = {
        "benchmark": "minutes to intelligible: held-out WER against training minutes",
        "run": str(a.workdir),
        "heldout": str(a.heldout),
        "n": a.n,
        "unseen": a.unseen,
        "asr": a.asr,
        "curve": curve,
        "minutes_to_intelligible": first and first["minutes"],
        "step_to_intelligible": first and first["step"],
    }
    if a.plot:
        plot(curve, a.plot, f"{a.workdir.name}: WER on {a.n} held-out sentences")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
