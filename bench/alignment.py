"""How fast each conditioning design learns to read its text, on the demo corpus.

Prints one JSON object. Every candidate trains the demo's model (`configs/demo.yaml`) on the
same eSpeak NG corpus and codes for the same number of steps; from its held-out evaluations
(`eval/text_gain_cb0`: validation loss of codebook 0 with another sentence's text minus with
its own) the benchmark reports the first step and wall time at which the gain reaches 0.5 and
1.0 nats, and the final gain, mean gain over codebooks and attention focus.

`today` is the design before this benchmark existed (no prior, the old learning rate,
codebooks weighted alike); "default" is `configs/demo.yaml` as it is: the prior the model
keeps (`model.attention_prior`) with decoder input dropout (`align.input_dropout`: a share of
the decoder's input steps replaced by PAD in training, so that the audio context is less
reliable than the text), speaking with the moving average of its weights (`optim.ema_decay`).
The others take the prior or the dropout away, replace the prior by the annealed training aids
of `jtts.alignment`, sharpen it, change the dropout or the average's decay. The gain
of `today` is the baseline the others are compared with, measured in the same run. All
candidates share the demo's codes (its codebook count), so codebook counts are compared by
running it with another `configs/demo.yaml`. A candidate whose run directory under `--work`
already has its metrics is summarized, not trained again; one trained with another config
(its saved config against what the bench would train) or left unfinished stops the bench.

    python bench/alignment.py                                   # codes from the demo's codec
    python bench/alignment.py --weights FILE --steps 600 --only today,default,annealed_prior_ctc
    python bench/alignment.py --judge 100    # and the WER of each one's speech
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jtts import demo  # noqa: E402
from jtts.config import config_diff, load_config  # noqa: E402
from jtts.metrics import read_jsonl  # noqa: E402
from jtts.rundir import RunDir  # noqa: E402
from speechcorpus import grammar  # noqa: E402

# Overrides on top of configs/demo.yaml and the demo's own; "default" is the config as is.
NO_PRIOR = "model.attention_prior=null"
NO_DROPOUT = "align.input_dropout=0"
NO_EMA = "optim.ema_decay=null"
CANDIDATES = {
    "today": [NO_PRIOR, NO_DROPOUT, NO_EMA, "optim.lr=5e-4", "optim.codebook_weights=null"],
    "default": [],
    "no_prior": [NO_PRIOR, NO_DROPOUT],
    "annealed_prior_ctc": [NO_PRIOR, NO_DROPOUT, "align.prior=true", "align.ctc_weight=0.1"],
    "input_dropout_no_prior": [NO_PRIOR],
    "prior_only": [NO_DROPOUT],
    "sharper_prior": [NO_DROPOUT, "model.attention_prior=1.0"],
    "prior_input_dropout_0.2": ["align.input_dropout=0.2"],
    "prior_input_dropout_0.4": ["align.input_dropout=0.4"],
    "prior_input_dropout_0.5": ["align.input_dropout=0.5"],
    "prior_input_dropout_0.6": ["align.input_dropout=0.6"],
    "prior_input_dropout_0.7": ["align.input_dropout=0.7"],
    "no_ema": [NO_EMA],
    "ema_0.995": ["optim.ema_decay=0.995"],
    "seed_1": ["train.seed=1"],
}
# How `--judge` samples: `jtts.sample` options on top of the run's `sample` config (top-k 50).
SAMPLINGS = {
    "greedy": ["--greedy"],
    "t0.5": ["--temperature", "0.5"],
    "t0.5_seed1": ["--temperature", "0.5", "--seed", "1"],
    "t0.7": ["--temperature", "0.7"],
    "t0.7_cfg1.5": ["--temperature", "0.7", "--cfg-scale", "1.5"],
}
# Every candidate: no samples or TensorBoard at evaluations (this measures reading only).
SETTINGS = ["eval.num_samples=0", "log.tensorboard=false"]
THRESHOLDS = (0.5, 1.0)


def first_reaching(evals: list[dict], threshold: float) -> dict | None:
    for r in evals:
        if r["eval/text_gain_cb0"] >= threshold:
            return {"step": r["step"], "wall_s": round(r["eval/elapsed_s"], 1)}
    return None


def summarize(run: Path) -> dict:
    rows = read_jsonl(RunDir(run).metrics)
    evals = [r for r in rows if "eval/text_gain_cb0" in r]
    last = evals[-1]
    return {
        **{f"gain_cb0_{t}": first_reaching(evals, t) for t in THRESHOLDS},
        "final_step": last["step"],
        "final_wall_s": round(last["eval/elapsed_s"], 1),
        "final_gain_cb0": round(last["eval/text_gain_cb0"], 3),
        "final_gain_mean": round(last["eval/text_gain"], 3),
        "final_null_gain": round(last["eval/null_gain"], 3),
        "final_focus": round(last["eval/attn_focus"], 3),
        "final_monotonicity": round(last["eval/attn_monotonicity"], 3),
        "final_loss": round(last["eval/loss"], 4),
        "unigram": round(last["eval/unigram"], 4),
        "curve_gain_cb0": [(r["step"], round(r["eval/text_gain_cb0"], 3)) for r in evals],
    }


def judge_run(
    out: Path, run: Path, texts: Path, heldout: Path, weights: str, env: dict, sampling: list[str]
) -> dict:
    """Speech of `run` (`jtts.sample` with the `sampling` options) for the lines of `texts`
    (spoken by eSpeak in `heldout`), in `out`, judged as the demo judges it."""
    model = demo.model_config(demo.CONFIG)
    cap = demo.cap_seconds(model)
    if not (out / "intelligibility.json").exists():
        cmd = demo.sample_command(run, texts, out / "synth", out / "codes", cap, sampling)
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
        demo.judge(out, heldout, out / "synth", weights, demo.codec_kbps(model))
    report = json.loads((out / "intelligibility.json").read_text())
    sets = report["sets"]
    return {
        "utterances": sets["synthesis"]["utterances"],
        "wer": round(sets["synthesis"]["wer"], 4),
        "nearest_own_text": sets["synthesis"]["nearest_own_text"],
        "recordings_wer": round(sets["original"]["wer"], 4),
        "resynthesis_wer": round(sets["resynthesis"]["wer"], 4),
        **demo.speaking_summary(report, cap),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/jtts-bench-alignment"))
    p.add_argument("--sentences", type=int, default=demo.SENTENCES)
    p.add_argument("--steps", type=int, default=demo.STEPS)
    p.add_argument("--weights", default=None, help="codec for the codes (default: the demo's)")
    p.add_argument("--only", default=None, help="comma-separated candidate names")
    p.add_argument(
        "--judge",
        type=int,
        default=0,
        help="also synthesize this many unseen sentences per candidate and judge them with "
        "the demo's offline ASR beside the recordings and their resynthesis",
    )
    p.add_argument(
        "--sampling",
        default="greedy",
        help=f"comma-separated ways to sample for --judge, of {', '.join(SAMPLINGS)}",
    )
    a = p.parse_args()
    names = a.only.split(",") if a.only else list(CANDIDATES)
    samplings = a.sampling.split(",")
    for given, known in ((names, CANDIDATES), (samplings, SAMPLINGS)):
        if unknown := [n for n in given if n not in known]:
            p.error(f"unknown {', '.join(unknown)}: choose from {', '.join(known)}")
    # stdout carries the JSON alone: what the commands print (and their children) goes to stderr
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    corpus = grammar.build_corpus(a.work / "corpus", n=a.sentences)
    store = a.work / "store"
    weights = demo.extract(
        corpus, store, a.weights, kbps=demo.codec_kbps(demo.model_config(demo.CONFIG))
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if a.judge:
        _, heldout, texts = demo.unseen_sentences(a.work / "judge", a.judge, a.sentences)
    results = {}
    for name in names:
        run = a.work / "runs" / name
        overrides = [*SETTINGS, *CANDIDATES[name]]
        if not RunDir(run).metrics.exists():
            cmd = demo.train_command(store, run, a.steps, overrides)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
            print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        results[name] = summarize(run)
        planned = load_config(demo.CONFIG, demo.train_overrides(a.steps, overrides))
        if differ := config_diff(load_config(RunDir(run).config), planned):
            sys.exit(f"{run}: trained with another {', '.join(differ)}; give another --work")
        if results[name]["final_step"] != planned.train.steps:
            sys.exit(f"{run}: unfinished at step {results[name]['final_step']}")
        for how in samplings if a.judge else ():
            out = a.work / "judge" / name / how
            verdict = judge_run(out, run, texts, heldout, weights, env, SAMPLINGS[how])
            results[name].setdefault("judge", {})[how] = verdict
    base = results.get("today", {}).get("final_gain_cb0")
    for r in results.values():
        r["gain_cb0_vs_today"] = round(r["final_gain_cb0"] - base, 3) if base is not None else None
    print(
        json.dumps(
            {
                "benchmark": "held-out text gain (reading) per conditioning design",
                "corpus": {"sentences": a.sentences, "codec": weights},
                "steps": a.steps,
                "cpus": os.cpu_count(),
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
