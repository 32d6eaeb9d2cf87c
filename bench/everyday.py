"""Everyday sentences: does a run (or a shipped model) say what a user types?

`bench/everyday.txt` holds 50 ordinary sentences written for this bench (none from any
corpus). The run's voice (`--voice`, e.g. hibari:heart) speaks them as the recordings; the run
speaks them with its `sample` settings; `codec_bridge evaluate --asr whisper` judges jtts beside
the recordings and their resynthesis by the run's codec at its bandwidth. Prints one JSON
object: WER per set, jtts over resynthesis, transcripts nearest their own sentence, EOS,
duration within 25% of the recording's, and the share of the sentences' words the training
transcripts lack (when the run's code store is here). Work is kept in `--work` and reused.

    python bench/everyday.py --workdir models/NAME --voice hibari:heart --work /tmp/jtts-everyday
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.frontend import evaluation  # noqa: E402
from bench.says_anything import absent_share, claim, codec_weights, group_figures  # noqa: E402
from codec_bridge.format import load_codes  # noqa: E402
from jtts import demo, shipped  # noqa: E402
from jtts.trained_run import UsageError, choose_categories, load_run, run_config  # noqa: E402
from speechcorpus.builder import write_corpus  # noqa: E402

TEXTS = ROOT / "bench" / "everyday.txt"


def model_voice(workdir: Path) -> str | None:
    """The voice a shipped model's corpus was spoken in (`jtts.export` records it)."""
    path = workdir / shipped.MODEL_JSON
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("provenance", {}).get("voice")


def everyday(
    workdir: Path,
    voice: str | None,
    work: Path,
    texts: Path = TEXTS,
    asr: str = "whisper",
    n: int | None = None,
    beside: Path | None = None,
    speaker: str | None = None,
) -> dict[str, Any]:
    """Speaks, samples and judges the first `n` of `texts` (one sentence a line) for
    `workdir` (in `speaker`'s voice for a run with a speaker table), and for `beside` when
    given (its figures under "beside")."""
    lines = [t.strip() for t in texts.read_text(encoding="utf-8").splitlines() if t.strip()]
    lines = lines[:n] if n else lines
    if not lines:
        raise UsageError(f"--texts {texts}: no sentences")
    voice = voice or model_voice(workdir)
    if voice is None:
        raise UsageError(f"--voice: {workdir} does not name its voice; pass --voice engine:name")
    choose_categories(run_config(workdir), {"speaker": speaker}, workdir)  # before any work
    settings = {"run": str(workdir), "beside": str(beside), "voice": voice, "texts": lines}
    claim(work, {**settings, "asr": asr, "speaker": speaker})
    ids = [f"{i:04d}" for i in range(1, len(lines) + 1)]
    recordings = write_corpus(work / "recordings", dict(zip(ids, lines, strict=True)), voice)
    (work / "texts.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = {"benchmark": "everyday sentences (bench/everyday.txt)", "voice": voice}
    result.update(_judged(workdir, work, recordings, asr, lines, speaker))
    if beside is not None:
        result["beside"] = _judged(beside, work / "beside", recordings, asr, lines)
    return result


def _judged(
    workdir: Path,
    work: Path,
    recordings: Path,
    asr: str,
    lines: list[str],
    speaker: str | None = None,
) -> dict[str, Any]:
    """`workdir` says `lines` (the texts.txt beside `recordings`), judged beside them."""
    run = load_run(workdir)
    texts = recordings.parent / "texts.txt"
    cap_s = run.cfg.model.max_frames / run.frame_rate
    synth, codes = work / "synth", work / "codes"
    if not synth.exists():
        sampling = ["--speaker", speaker] if speaker else []
        cmd = demo.sample_command(workdir, texts, synth, codes, cap_s, sampling)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=sys.stderr)
    meta = run.store_meta
    weights, kbps = codec_weights(meta), float(meta["bandwidth"])
    report = evaluation(work, recordings, synth, weights, kbps, asr)
    rows = report["utterances"]
    eos = [load_codes(codes / f"{r['id']}.npy")[1]["eos"] for r in rows]
    figures = group_figures(rows, eos, report["asr"]["normalizer"])
    share = absent_share(lines, meta)
    if share is not None:
        figures["words_absent_from_training"] = share
    return {
        "run": str(workdir),
        "step": run.step,
        "speaker": speaker,
        "asr": {k: report["asr"].get(k) for k in ("engine", "model", "normalizer")},
        "codec": {"weights": weights, "kbps": kbps},
        "figures": figures,
        "transcripts": [
            {
                "text": r["text"],
                "jtts": r["synthesis"]["hyp"],
                "resynthesis": r["resynthesis"]["hyp"],
            }
            for r in rows
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--workdir",
        type=Path,
        default=ROOT / "models" / "hibari-reader",
        help="a run or shipped model",
    )
    p.add_argument("--voice", help="the run's voice, engine:name (default: a shipped model's)")
    p.add_argument("--n", type=int, help="only the first N sentences")
    p.add_argument("--beside", type=Path, help="another run to judge on the same sentences")
    p.add_argument("--texts", type=Path, default=TEXTS)
    p.add_argument("--work", type=Path, default=Path("/tmp/jtts-everyday"))
    p.add_argument("--asr", default="whisper", help="codec_bridge evaluate --asr")
    p.add_argument("--speaker", help="the voice to speak in (runs trained with a speaker table)")
    a = p.parse_args(argv)
    try:
        result = everyday(a.workdir, a.voice, a.work, a.texts, a.asr, a.n, a.beside, a.speaker)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
