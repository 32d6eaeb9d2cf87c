"""Written English to its spoken form, against spoken forms written by hand from English usage."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jtts import text
from jtts.data import encode_text
from jtts.verbalize import split_sentences, verbalize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.normalization import load_cases  # noqa: E402

# (written, spoken): the reference is how an American reader says it, written out by hand in
# bench/normalization_cases.csv (which bench/normalization.py also speaks and judges).
TABLE = [(c["written"], c["spoken"]) for c in load_cases()]


def test_the_table_is_large():
    assert len(TABLE) >= 30


@pytest.mark.parametrize(("written", "spoken"), TABLE)
def test_spoken_form(written, spoken):
    assert verbalize(written) == spoken


def test_a_sentence_of_everything():
    said = verbalize("Dr. Smith paid $3.50 at 3:30 pm on Dec. 5, 2026.")
    assert said == (
        "Doctor Smith paid three dollars and fifty cents at three thirty p m on "
        "December fifth, twenty twenty-six."
    )


@pytest.mark.parametrize(
    "written",
    [
        "9" * 200,  # an identifier, read digit by digit (num2words would overflow)
        "MP3 4K 1080p v1.2.3 24/7 10:30:15 ½ ٣",
        "\x00hi\x07 there\x1b",
        "🎉 你好，世界 مرحبا",
        "",
        "?!",
    ],
)
def test_odd_text_never_raises_and_leaves_no_ascii_digits(written):
    assert not re.search(r"[0-9]", verbalize(written))


def test_control_characters_become_spaces():
    assert verbalize("\x00hi\x07 there\x1b") == "hi there"


# Whisper's English normalizer turns number words back into digits ("twenty dollars" ->
# "$20"); spoken_english keeps the words, and otherwise normalizes as whisper_english does.
@pytest.mark.parametrize(
    ("written", "whisper_english", "spoken_english"),
    [
        ("twenty dollars", "$20", "twenty dollars"),
        (
            "Dr. Smith paid $3.50!",
            "doctor smith paid $3.50",
            "doctor smith paid three dollars and fifty cents",
        ),
        ("It's 5 mm long.", "it is 5 long", "it is five millimeters long"),
        ("The colour of the 2nd car", "the color of the 2nd car", "the color of the second car"),
        ("At 12:00 on 5 May", "at 12 0 on 5 may", "at twelve o clock on the fifth of may"),
    ],
)
def test_spoken_english_composes_with_whisper_english(written, whisper_english, spoken_english):
    assert text.normalize(written, "whisper_english") == whisper_english
    assert text.normalize(written, "spoken_english") == spoken_english


def test_spoken_english_token_ids():
    tok = text.get_tokenizer("whisper")
    ids = encode_text("Dr. Smith paid $3.50!", "spoken_english")
    assert list(ids) == [
        *tok.encode("doctor smith paid three dollars and fifty cents"),
        tok.eot,
    ]
    assert tok.decode(ids[:-1]) == "doctor smith paid three dollars and fifty cents"
    assert not re.search(r"\d", tok.decode(ids[:-1]))


def test_split_sentences_knows_the_abbreviations():
    written = "Mr. Smith met Dr. Jones on Dec. 5. They paid $3.50, i.e. a lot! Then etc. Gone?"
    assert split_sentences(written) == [
        "Mr. Smith met Dr. Jones on Dec. 5.",
        "They paid $3.50, i.e. a lot!",
        "Then etc. Gone?",
    ]


def test_split_sentences_ignores_case_of_abbreviations():
    assert split_sentences("we met dr. jones. then left") == ["we met dr. jones.", "then left"]


def test_split_sentences_keeps_abbreviations():
    text = "Dr. Smith met J. R. R. Tolkien. Why?  Yes!\nA new line"
    assert split_sentences(text) == [
        "Dr. Smith met J. R. R. Tolkien.",
        "Why?",
        "Yes!",
        "A new line",
    ]


def test_spoken_english_loads_neither_torch_nor_jax():
    code = (
        "import sys, json, jtts.text; jtts.text.normalize('$5 on 5/5/2025', 'spoken_english');"
        "print(json.dumps([m in sys.modules for m in ('torch', 'jax')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, False]
