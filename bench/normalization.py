"""The normalization table: written English, its spoken form, and what Whisper hears jtts say.

The cases (`bench/normalization_cases.csv`: category, written form, and the spoken form an
American reader says, written by hand; `tests/test_verbalize.py` checks `jtts.verbalize`
against that column) cover numbers, dates, times, currency, abbreviations and units. Without
`--workdir` it prints a JSON list of category, written and spoken, where spoken is
`jtts.verbalize.verbalize`: the first step of the `spoken_english` normalizer with which
`jtts.sample` reads a text (`--print-normalized` prints it after Whisper's English normalizer).

With `--workdir RUN` one `python -m jtts.sample --text-file` call speaks every written form,
`python -m codec_bridge evaluate --asr whisper` transcribes each wav, and each case gains its
transcript and its WER against the spoken form, both through the judge's text normalizer as
evaluate scores them (Whisper's English normalizer: "twenty dollars" and "$20" are the same
words); then the mean over cases and evaluate's pooled WER. Prints one JSON object.

    python bench/normalization.py --markdown
    python bench/normalization.py --workdir runs/demo --out-dir /tmp/jtts-normalization
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jtts.trained_run import UsageError, run_config  # noqa: E402
from jtts.verbalize import verbalize  # noqa: E402

CASES_CSV = Path(__file__).with_name("normalization_cases.csv")
CATEGORIES = ("numbers", "dates", "times", "currency", "abbreviations", "units")


def load_cases(path: Path = CASES_CSV) -> list[dict[str, str]]:
    """The rows of the cases CSV: category, written, spoken (by hand)."""
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def table(cases: list[dict[str, str]]) -> list[dict[str, str]]:
    """Each case's category, written form and spoken form as `jtts.verbalize` says it."""
    return [
        {"category": c["category"], "written": c["written"], "spoken": verbalize(c["written"])}
        for c in cases
    ]


def synthesize(workdir: Path, rows: list[dict[str, str]], out: Path) -> int:
    """`out`: an LJ Speech folder (wavs/NNNN.wav by `jtts.sample`, metadata.csv whose
    normalized column is the spoken form) for `codec_bridge evaluate`; the sample exit code."""
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    texts = out / "texts.txt"
    texts.write_text("".join(r["written"] + "\n" for r in rows), encoding="utf-8")
    meta = "".join(f"{n:04d}|{r['written']}|{r['spoken']}\n" for n, r in enumerate(rows, 1))
    (out / "metadata.csv").write_text(meta, encoding="utf-8")
    cmd = [sys.executable, "-m", "jtts.sample", "--workdir", str(workdir)]
    cmd += ["--text-file", str(texts), "--out-dir", str(out / "wavs")]
    return subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr).returncode


def transcribe(folder: Path, asr: str, device: str) -> tuple[int, dict[str, Any]]:
    """`codec_bridge evaluate` of the LJ Speech `folder` (no speaker judge): its exit code and
    report."""
    report = folder / "report.json"
    cmd = [sys.executable, "-m", "codec_bridge", "evaluate", "--format", "ljspeech"]
    cmd += ["--input", str(folder), "--asr", asr, "--vocabulary", "none", "--device", device]
    cmd += ["--no-speaker", "--quiet", "--out", str(report)]
    code = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr).returncode
    return code, json.loads(report.read_text()) if code == 0 else {}


def score(rows: list[dict[str, str]], hyps: list[str], normalizer: str) -> dict[str, Any]:
    """`rows` with each transcript and its WER against the spoken form, and the mean WER."""
    from codec_bridge.judge.evaluate import error_rates  # torch side: only when judging

    cases = [
        {**r, "transcript": h, "wer": round(error_rates([r["spoken"]], [h], normalizer)["wer"], 4)}
        for r, h in zip(rows, hyps, strict=True)
    ]
    return {"mean_wer": round(sum(c["wer"] for c in cases) / len(cases), 4), "cases": cases}


def markdown(rows: list[dict[str, Any]]) -> str:
    """`rows` as a Markdown table, with the transcript and WER columns when they have them."""
    cols = [c for c in ("category", "written", "spoken", "transcript", "wer") if c in rows[0]]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def judged(workdir: Path, out: Path, asr: str, device: str) -> tuple[int, dict[str, Any]]:
    """Every case spoken by the run at `workdir` and judged: exit code and result."""
    rows = table(load_cases())
    code = synthesize(workdir, rows, out)
    if code == 0:
        code, report = transcribe(out, asr, device)
    if code:
        return code, {}
    result = {
        "workdir": str(workdir),
        "text_normalizer": run_config(workdir).data.text_normalizer,
        "asr": report["asr"],
        "wer": round(report["sets"]["original"]["wer"], 4),
    }
    hyps = [u["original"]["hyp"] for u in report["utterances"]]
    return 0, {**result, **score(rows, hyps, report["asr"]["normalizer"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--markdown", action="store_true", help="a Markdown table instead of JSON")
    p.add_argument(
        "--workdir", type=Path, help="a trained run or shipped model: speak and judge every case"
    )
    p.add_argument("--out-dir", type=Path, default=Path("/tmp/jtts-normalization"))
    p.add_argument("--asr", default="whisper", help="codec_bridge evaluate's --asr")
    p.add_argument("--device", default="cpu", help="for the ASR")
    a = p.parse_args(argv)
    if a.workdir is None:
        rows = table(load_cases())
        print(markdown(rows) if a.markdown else json.dumps(rows, indent=1, ensure_ascii=False))
        return 0
    try:
        run_config(a.workdir)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    code, result = judged(a.workdir, a.out_dir, a.asr, a.device)
    if code == 0:
        if a.markdown:
            print(markdown(result["cases"]) + f"\n\nmean WER {result['mean_wer']}")
        else:
            print(json.dumps(result, indent=1, ensure_ascii=False))
    return code


if __name__ == "__main__":
    sys.exit(main())
