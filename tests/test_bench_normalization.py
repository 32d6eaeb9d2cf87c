"""bench/normalization.py: the table of written forms and their spoken forms, and how a
transcript of each is scored (the --workdir path's synthesis and Whisper run are not run here:
no trained model exists, and an untrained one's babble would test nothing of the scoring)."""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import normalization as bench  # noqa: E402

# Written by hand from English usage, not from jtts.verbalize.
SPOT_CHECKS = {
    "$3.50": "three dollars and fifty cents",
    "12/05/2026": "December fifth, twenty twenty-six",
    "at 3:30 pm": "at three thirty p m",
    "Dr. Jones": "Doctor Jones",
    "60 mph": "sixty miles per hour",
    "the 1990s": "the nineteen nineties",
}


@pytest.fixture(scope="module")
def rows():
    return bench.table(bench.load_cases())


def test_the_table_prints_as_json(capsys):
    assert bench.main([]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == bench.table(bench.load_cases())
    assert len(printed) >= 30
    assert {r["category"] for r in printed} == set(bench.CATEGORIES)
    for category in bench.CATEGORIES:
        assert sum(r["category"] == category for r in printed) >= 3, category


def test_spoken_forms_have_no_digits_or_money_or_percent_symbols(rows):
    for r in rows:
        assert not re.search(r"[\d$£€¥¢%]", r["spoken"]), r


def test_spot_checks(rows):
    spoken = {r["written"]: r["spoken"] for r in rows}
    for written, said in SPOT_CHECKS.items():
        assert spoken[written] == said


def test_markdown_has_a_row_per_case(capsys, rows):
    assert bench.main(["--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| category | written | spoken |"
    assert len(lines) == 2 + len(rows)
    assert "| currency | $3.50 | three dollars and fifty cents |" in lines


def test_transcripts_are_scored_after_the_judges_normalizer():
    """Whisper writes "$3.50" for "three dollars and fifty cents": no error after its English
    normalizer, every word wrong after the basic one; a dropped word is one error."""
    rows = [
        {"category": "currency", "written": "$3.50", "spoken": "three dollars and fifty cents"},
        {"category": "abbreviations", "written": "Dr. Jones", "spoken": "Doctor Jones"},
    ]
    whisper = bench.score(rows, ["$3.50.", "Doctor."], "whisper_english")
    assert [c["wer"] for c in whisper["cases"]] == [0.0, 0.5]
    assert whisper["mean_wer"] == 0.25
    assert [c["transcript"] for c in whisper["cases"]] == ["$3.50.", "Doctor."]
    basic = bench.score(rows, ["$3.50.", "Doctor Jones"], "basic")
    assert [c["wer"] for c in basic["cases"]] == [1.0, 0.0]


def test_a_workdir_that_is_not_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert bench.main(["--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: --workdir {tmp_path}: not a training run (no config.json) nor a shipped model "
        "(no model.json)\n"
    )
