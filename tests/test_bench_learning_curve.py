"""bench/learning_curve.py: training minutes from the logged step times, and a curve that
runs says_anything's verdict once per checkpoint (stubbed here; its own test runs it)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import learning_curve as bench  # noqa: E402


def write_metrics(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_minutes_sum_each_intervals_step_time_once(tmp_path):
    """Intervals of 10 steps at 0.6 s and 1.2 s; a resumed run logs step 20 again (its last
    row counts) and evaluation rows carry no step time."""
    metrics = tmp_path / "metrics.jsonl"
    write_metrics(
        metrics,
        [
            {"step": 10, "train/step_time_s": 0.6},
            {"step": 20, "train/step_time_s": 9.9},
            {"step": 20, "eval/loss": 1.0},
            {"step": 20, "train/step_time_s": 1.2},
            {"step": 30, "train/step_time_s": None},
            {"step": 40, "train/step_time_s": 0.6},
        ],
    )
    minutes = bench.training_minutes(metrics)
    assert list(minutes) == [10, 20, 40]
    assert minutes[10] == pytest.approx(6 / 60)
    assert minutes[20] == pytest.approx(18 / 60)
    assert minutes[40] == pytest.approx((18 + 12) / 60)


def fake_verdict(wers: dict[int, float]):
    def verdict(workdir, heldout, work, n, unseen, asr, step):
        group = {"wer_resynthesis": 0.2, "nearest_own_text": 0.5 if step == 20 else 0.95}
        return {
            "step": step,
            "groups": {
                "heldout": {**group, "wer": wers[step]},
                "unseen": {**group, "wer": wers[step] + 0.1},
            },
            "targets": {"wer_le_2x_resynthesis": {"met": wers[step] <= 0.4}},
        }

    return verdict


def test_the_curve_has_a_point_per_checkpoint_and_the_first_intelligible(
    tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    for step in (20, 10, 40):
        (run / "checkpoints" / str(step)).mkdir(parents=True)
    write_metrics(
        run / "metrics.jsonl", [{"step": s, "train/step_time_s": 6.0} for s in (10, 20, 40)]
    )
    monkeypatch.setattr(bench, "verdict", fake_verdict({10: 0.9, 20: 0.35, 40: 0.3}))
    png = tmp_path / "curve.png"
    args = ["--workdir", run, "--heldout", tmp_path, "--work", tmp_path / "w", "--plot", png]
    assert bench.main([str(a) for a in args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["step"] for p in out["curve"]] == [10, 20, 40]
    assert [p["minutes"] for p in out["curve"]] == [1.0, 2.0, 4.0]
    assert [p["wer_unseen"] for p in out["curve"]] == [1.0, 0.45, 0.4]
    # step 20 is within 2x the resynthesis' WER, but its transcripts rarely name their sentence
    assert [p["intelligible"] for p in out["curve"]] == [False, False, True]
    assert out["step_to_intelligible"] == 40 and out["minutes_to_intelligible"] == 4.0
    assert png.stat().st_size > 0


def test_a_run_without_checkpoints_is_one_line(tmp_path, capsys):
    assert bench.main(["--workdir", str(tmp_path), "--heldout", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --workdir") and err.count("\n") == 1
