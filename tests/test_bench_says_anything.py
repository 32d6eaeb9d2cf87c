"""bench/says_anything.py: issue 25's figures for a run, recomputed here from the evaluate
report's utterance rows and the codes sidecars (the tiny run of test_sampler, with the untrained
24 kHz EnCodec as its codec, judged by pocketsphinx on noise recordings)."""

import json
import re
import shutil
import sys
from pathlib import Path

import jiwer
import numpy as np
import pytest
from test_sampler import codec_run, noise_wav, run  # noqa: F401 (fixtures)

from codec_bridge.format import load_codes
from jtts.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import says_anything as bench  # noqa: E402

UNSEEN = ["Zebras yodel softly.", "Quokkas nap."]  # words the run's transcripts lack


@pytest.fixture(scope="module")
def judged_run(run, codec_run, tmp_path_factory):  # noqa: F811
    """codec_run whose store.json names the code store it trained on (its transcripts) and
    its untrained codec's file by absolute path."""
    root = tmp_path_factory.mktemp("verdict")
    out = root / "run"
    out.mkdir()
    RunDir(out).checkpoints.symlink_to(RunDir(codec_run[0]).checkpoints.resolve())
    shutil.copy(RunDir(codec_run[0]).config, RunDir(out).config)
    meta = json.loads(RunDir(codec_run[0]).store.read_text())
    meta["weights"]["file"] = str(Path(meta["store_dir"]) / meta["weights"]["file"])
    meta["store_dir"] = json.loads(RunDir(run[0]).store.read_text())["store_dir"]
    RunDir(out).store.write_text(json.dumps(meta))
    return out, run[1]


@pytest.fixture(scope="module")
def heldout(judged_run, tmp_path_factory):
    """A held-out corpus: 2 unseen-word sentences, then 2 training sentences and one whose
    recording is longer than the model's 5.3 s (never judged)."""
    utts = judged_run[1]
    root = tmp_path_factory.mktemp("heldout")
    (root / "wavs").mkdir()
    texts = [*UNSEEN, utts[1].text, "Far too long to fit.", utts[2].text]
    rows = []
    for i, (text, seconds) in enumerate(zip(texts, [1.0, 1.5, 0.5, 5.0, 0.4], strict=True)):
        noise_wav(root / "wavs" / f"HO-{i:05d}.wav", seconds)
        rows.append(f"HO-{i:05d}|{text}|{text}\n")
    (root / "metadata.csv").write_text("".join(rows))
    (root / "corpus.json").write_text(
        json.dumps({"voice": "noise:test", "split": "heldout", "n_unseen": 2})
    )
    return root, texts


@pytest.mark.slow
def test_the_figures_follow_from_the_rows(judged_run, heldout, tmp_path, capfd):
    corpus, texts = heldout
    work = tmp_path / "work"
    args = ["--workdir", judged_run[0], "--heldout", corpus, "--n", 4, "--unseen", 2]
    code = bench.main([str(a) for a in [*args, "--work", work, "--asr", "pocketsphinx"]])
    out, err = capfd.readouterr()
    assert code == 0, err
    result = json.loads(out)
    report = json.loads((work / "report.json").read_text())
    rows = report["utterances"]
    assert [r["text"] for r in rows] == [*UNSEEN, texts[2], texts[4]]  # the long one left out
    assert {r["speaker"] for r in rows} == {"noise:test"}  # the held-out corpus's voice
    assert report["asr"]["normalizer"] == "basic"
    eos = [load_codes(work / "codes" / f"{r['id']}.npy")[1]["eos"] for r in rows]

    def words(s: str) -> str:
        return " ".join(re.findall(r"[a-z']+", s.lower()))

    groups = result["groups"]
    for name, part in (("heldout", rows), ("unseen", rows[:2])):
        g, own = groups[name], eos[: len(part)]
        refs = [words(r["text"]) for r in part]
        wer = {
            s: jiwer.wer(refs, [words(r[s]["hyp"]) for r in part])
            for s in ("original", "resynthesis", "synthesis")
        }
        assert g["sentences"] == len(part)
        assert g["wer"] == pytest.approx(wer["synthesis"])
        assert g["wer_recordings"] == pytest.approx(wer["original"])
        assert g["wer_resynthesis"] == pytest.approx(wer["resynthesis"])
        ratio = wer["synthesis"] / wer["resynthesis"] if wer["resynthesis"] else None
        assert g["synthesis_over_resynthesis"] == pytest.approx(ratio)
        hyps = [words(r["synthesis"]["hyp"]) for r in part]
        nearest = [
            all(jiwer.wer(ref, h or "-") < jiwer.wer(o, h or "-") for o in set(refs) - {ref})
            for ref, h in zip(refs, hyps, strict=True)
        ]
        assert g["nearest_own_text"] == pytest.approx(np.mean(nearest))
        assert g["eos"] == pytest.approx(sum(own) / len(own))
        ratios = [r["synthesis"]["duration_ratio"] for r in part]
        assert g["duration_within_25pct"] == pytest.approx(
            sum(0.75 <= x <= 1.25 for x in ratios) / len(ratios)
        )
    # "zebras yodel softly quokkas nap": every word is new to the three training transcripts
    assert groups["unseen"]["words_absent_from_training"] == 1.0
    t = result["targets"]
    h, u = groups["heldout"], groups["unseen"]
    assert t["wer_le_2x_resynthesis"]["met"] == (h["wer"] <= 2 * h["wer_resynthesis"])
    assert t["wer_le_0.10"]["met"] == (h["wer"] <= 0.10)
    assert t["unseen_wer_le_0.15"]["met"] == (u["wer"] <= 0.15)
    assert t["nearest_own_text_ge_0.98"]["met"] == (h["nearest_own_text"] >= 0.98)
    assert t["eos_all"]["met"] == all(eos)
    assert t["duration_within_25pct_ge_0.90"]["met"] == (h["duration_within_25pct"] >= 0.90)
    assert result["done"] == all(x["met"] for x in t.values())
    assert result["codec"]["kbps"] == 6.0 and result["codec"]["weights"].endswith(".pt")


def test_bad_input_is_one_line(judged_run, heldout, tmp_path, capfd):
    args = ["--workdir", str(judged_run[0]), "--work", str(tmp_path / "w")]
    assert bench.main([*args, "--heldout", str(tmp_path)]) == 2
    err = capfd.readouterr().err
    assert (
        err.startswith(f"error: --heldout {tmp_path}: not a speechcorpus") and err.count("\n") == 1
    )
    assert bench.main([*args, "--heldout", str(heldout[0]), "--n", "4", "--unseen", "3"]) == 2
    err = capfd.readouterr().err
    assert "only 2 unseen-word sentences" in err and err.count("\n") == 1
    assert bench.main([*args, "--heldout", str(heldout[0]), "--speaker", "ljspeech"]) == 2
    err = capfd.readouterr().err
    assert err.startswith("error: --speaker: ") and "was not trained with a speaker" in err
    assert err.count("\n") == 1 and not (tmp_path / "w").exists()
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "verdict.json").write_text('{"run": "another"}')
    assert bench.main([*args, "--heldout", str(heldout[0]), "--n", "4", "--unseen", "2"]) == 2
    err = capfd.readouterr().err
    assert err.startswith(f"error: --work {tmp_path / 'w'} holds another") and err.count("\n") == 1
