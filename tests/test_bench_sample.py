"""bench/sample.py --workdir: a trained run's batch-1 decode and whole `jtts.sample` calls, timed
(the tiny run of test_sampler, with the untrained 24 kHz EnCodec as its codec)."""

import json
import sys
from pathlib import Path

import pytest
from test_sampler import codec_run, run  # noqa: F401 (fixtures)

from jtts.data import encode_text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import sample as bench  # noqa: E402


@pytest.mark.slow
def test_a_trained_run_is_timed_phase_by_phase(codec_run, capsys):  # noqa: F811
    workdir = str(codec_run[0])
    assert bench.main(["--workdir", workdir]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["runs"]) == [workdir]
    r = result["runs"][workdir]
    d = r["decode"]
    normalizer = json.loads((codec_run[0] / "config.json").read_text())["data"]["text_normalizer"]
    assert [s["text"] for s in d["sentences"]] == list(bench.SENTENCES)
    for s in d["sentences"]:
        assert s["text_tokens"] == len(encode_text(s["text"], normalizer))  # the run's front end
        assert s["frames"] >= 1 and s["s"] > 0
        audio_s = s["frames"] / 75
        assert s["rtf"] == pytest.approx(s["s"] / audio_s, abs=5e-4 / audio_s + 1e-4)  # s: 1 ms
    assert d["audio_s"] == pytest.approx(sum(s["frames"] for s in d["sentences"]) / 75, abs=0.01)
    assert d["rtf"] == pytest.approx(d["s"] / d["audio_s"], rel=0.01) and d["compile_s"] > 0
    for name in ("first_call", "repeat_call"):
        call = r[name]
        for phase in ("load_s", "compile_s", "decode_s", "codec_s"):
            assert call[phase] > 0, (name, phase)
        assert call["host_s"] >= 0 and call["write_s"] >= 0
        assert call["startup_s"] > 0  # the interpreter and its imports, before `load`
        assert call["total_s"] >= sum(call[phase] for phase in bench.PHASES)
        assert call["rtf"] == pytest.approx(call["total_s"] / call["audio_s"], rel=0.01)
    # the repeat call loads the programs the first compiled from the XLA cache
    assert r["repeat_call"]["compile_s"] < r["first_call"]["compile_s"]
    assert r["targets"] == {
        "decode_b1_rtf_le_0.2": d["rtf"],
        "repeat_call_rtf_le_0.2": r["repeat_call"]["rtf"],
    }


def test_a_directory_that_is_no_run_is_one_line(tmp_path, capsys):
    assert bench.main(["--workdir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --workdir {tmp_path / 'nope'}: ") and err.count("\n") == 1
