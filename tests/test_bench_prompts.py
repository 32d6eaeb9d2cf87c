"""bench/prompts.py: issue 26's voice-prompt figures from two evaluate reports, the nearest
table voice of a held-out voice, and the choice of prompt clips."""

import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic import silent_manifest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import prompts as bench  # noqa: E402
from jtts.trained_run import UsageError  # noqa: E402


def report(wer: dict, sim: tuple, nearest: tuple) -> dict:
    """An evaluate report for held-out voices x and y: wer[set] = (x, y); the synthesis's SIM
    and nearest-voice share per voice, overall their means (equal counts)."""
    sets = {n: {"voices": {v: {"wer": wer[n][i]} for i, v in enumerate("xy")}} for n in wer}
    per = {
        v: {"sim": sim[i], "nearest_voice": nearest[i], "taken_for": {v: 1}}
        for i, v in enumerate("xy")
    }
    synthesis = {
        "sim": float(np.mean(sim)),
        "nearest_voice": float(np.mean(nearest)),
        "voices": per,
    }
    recordings = {
        "sim": 0.9,
        "nearest_voice": 1.0,
        "voices": {v: {"sim": 0.9, "nearest_voice": 1.0} for v in "xy"},
    }
    resynthesis = {  # x is told from the others through the codec, y not
        "sim": 0.7,
        "nearest_voice": 0.5,
        "voices": {
            "x": {"sim": 0.8, "nearest_voice": 1.0},
            "y": {"sim": 0.6, "nearest_voice": 0.0},
        },
    }
    speaker = {"synthesis": synthesis, "original": recordings, "resynthesis": resynthesis}
    return {"sets": sets, "speaker": {"sets": speaker}}


def test_targets_follow_the_issue():
    wer = {"original": (0.1, 0.1), "resynthesis": (0.2, 0.2), "synthesis": (0.3, 0.5)}
    prompted = report(wer, sim=(0.8, 0.7), nearest=(1.0, 0.7))
    plain = report({**wer, "synthesis": (0.3, 0.3)}, sim=(0.6, 0.6), nearest=(0.0, 0.0))
    out = bench.figures(prompted, plain, ["x", "y"])
    t = out["targets"]
    assert t["sim_gain_ge_0.10"]["value"] == pytest.approx(0.15) and t["sim_gain_ge_0.10"]["met"]
    assert t["nearest_voice_ge_0.80"] == {"value": 0.85, "met": True}
    # x: 0.3 <= 2 x 0.2; y: 0.5 > 0.4
    assert t["wer_le_2x_resynthesis_each_voice"] == {"value": {"x": True, "y": False}, "met": False}
    assert out["voices"]["y"]["without_prompt"]["wer"] == 0.3
    assert out["voices"]["x"]["recordings_wer"] == 0.1
    assert out["voices"]["y"]["resynthesis_nearest_voice"] == 0.0
    assert out["voices"]["x"]["recordings_sim"] == 0.9
    assert out["voices"]["x"]["resynthesis_sim"] == 0.8
    assert out["overall"]["resynthesis"] == {"sim": 0.7, "nearest_voice": 0.5}
    assert out["overall"]["recordings"] == {"sim": 0.9, "nearest_voice": 1.0}
    plain = report(wer, sim=(0.75, 0.7), nearest=(0.0, 0.0))  # a gain of 0.025 only
    assert not bench.figures(prompted, plain, ["x", "y"])["targets"]["sim_gain_ge_0.10"]["met"]


def test_the_baseline_speaker_is_the_table_voice_nearest_the_recordings():
    utts = [
        {"speaker": "x", "original": {"sims": {"a": 0.9, "b": 0.5, "x": 0.95}}},
        {"speaker": "x", "original": {"sims": {"a": 0.2, "b": 0.7, "x": 0.95}}},  # mean a 0.55
        {"speaker": "y", "original": {"sims": {"a": 0.1, "b": 0.2, "x": 0.3}}},
    ]
    assert bench.nearest_table_voice({"utterances": utts}, "x", ["a", "b"]) == "b"  # 0.6 > 0.55
    with pytest.raises(UsageError, match="no voiced recording of z"):
        bench.nearest_table_voice({"utterances": utts}, "z", ["a", "b"])


def test_a_prompt_is_the_first_clip_of_1_to_5_s_not_judged(tmp_path):
    clips = [("x", 0.5), ("x", 6), ("x", 2), ("y", 3), ("x", 3)]
    silent_manifest(tmp_path / "p.csv", clips)
    got = bench.prompts(tmp_path / "p.csv", ["x", "y"], avoid=set())
    assert {v: it.id for v, it in got.items()} == {"x": "u2", "y": "u3"}
    got = bench.prompts(tmp_path / "p.csv", ["x"], avoid={str((tmp_path / "2.wav").resolve())})
    assert got["x"].id == "u4"
    with pytest.raises(UsageError, match=r"no clip of 1-5 s for \['z'\]"):
        bench.prompts(tmp_path / "p.csv", ["x", "z"], avoid=set())
