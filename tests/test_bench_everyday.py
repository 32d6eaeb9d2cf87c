"""bench/everyday.py: the run's voice speaks the sentences, the run says them, the judge's rows
give the figures (the tiny run of test_sampler with its untrained 24 kHz EnCodec, eSpeak as
the voice, pocketsphinx as the judge)."""

import json
import re
import sys
from pathlib import Path

import jiwer
import pytest
from test_bench_says_anything import judged_run  # noqa: F401 (fixture)
from test_sampler import codec_run, run  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import everyday as bench  # noqa: E402
from jtts import demo  # noqa: E402


def words(s: str) -> str:
    return " ".join(re.findall(r"[a-z']+", s.lower()))


@pytest.mark.slow
def test_everyday_sentences_are_spoken_said_and_judged(judged_run, tmp_path, capfd):  # noqa: F811
    texts = tmp_path / "everyday.txt"
    lines = [judged_run[1][1].text, "Zebras yodel softly."]
    texts.write_text("\n" + "\n".join(lines) + "\n\n")
    work = tmp_path / "work"
    args = ["--workdir", judged_run[0], "--voice", "espeak:en-us", "--texts", texts]
    args += ["--beside", judged_run[0]]  # the same run beside itself: the same codes
    code = bench.main([str(a) for a in [*args, "--work", work, "--asr", "pocketsphinx"]])
    out, err = capfd.readouterr()
    assert code == 0, err
    result = json.loads(out)
    rows = json.loads((work / "report.json").read_text())["utterances"]
    assert [r["text"] for r in rows] == lines and {r["speaker"] for r in rows} == {"espeak:en-us"}
    f = result["figures"]
    refs = [words(t) for t in lines]
    assert f["sentences"] == 2
    assert f["wer"] == pytest.approx(jiwer.wer(refs, [words(r["synthesis"]["hyp"]) for r in rows]))
    assert f["wer_recordings"] == pytest.approx(
        jiwer.wer(refs, [words(r["original"]["hyp"]) for r in rows])
    )
    # 3 of the 3 + n words of the training sentence are known: "zebras yodel softly" are not
    n = len(refs[0].split())
    assert f["words_absent_from_training"] == pytest.approx(3 / (n + 3))
    assert [t["jtts"] for t in result["transcripts"]] == [r["synthesis"]["hyp"] for r in rows]
    assert result["beside"]["transcripts"] == result["transcripts"]
    assert (work / "beside" / "report.json").is_file()
    said = demo.everyday_lines(result)  # how make demo prints it
    assert said[0].startswith("Everyday sentences, Whisper base: WER")
    assert said[1:4] == [
        f"  {lines[0]}",
        f"    {demo.SHIPPED.name}: {result['transcripts'][0]['jtts']}",
        f"    demo model: {result['beside']['transcripts'][0]['jtts']}",
    ]
    stamp = (work / "synth" / "0001.wav").stat().st_mtime_ns
    assert bench.main([str(a) for a in [*args, "--work", work, "--asr", "pocketsphinx"]]) == 0
    assert (work / "synth" / "0001.wav").stat().st_mtime_ns == stamp  # work is reused
    capfd.readouterr()
    assert bench.main([str(a) for a in [*args, "--work", work, "--n", 1]]) == 2
    err = capfd.readouterr().err
    assert err.startswith(f"error: --work {work} holds another") and err.count("\n") == 1
    # a speaker the run was not trained with is refused before any work is claimed
    fresh = tmp_path / "fresh"
    assert bench.main([str(a) for a in [*args, "--work", fresh, "--speaker", "ljspeech"]]) == 2
    err = capfd.readouterr().err
    assert err.startswith("error: --speaker: ") and "was not trained with a speaker" in err
    assert err.count("\n") == 1 and not fresh.exists()
