"""Written English to its spoken form, against spoken forms written by hand from English usage."""

import json
import re
import subprocess
import sys

import pytest

from jtts import text
from jtts.data import encode_text
from jtts.verbalize import split_sentences, verbalize

# (written, spoken): the reference is how an American reader says it, written out by hand.
TABLE = [
    # cardinals and decimals
    ("7", "seven"),
    ("42 apples", "forty-two apples"),
    ("1,234,567", "one million two hundred thirty-four thousand five hundred sixty-seven"),
    ("3.14", "three point one four"),
    ("0.5", "zero point five"),
    ("-17 below", "minus seventeen below"),
    ("Agent 007", "Agent zero zero seven"),
    # ordinals
    ("1st place", "first place"),
    ("the 22nd floor", "the twenty-second floor"),
    ("the 103rd time", "the one hundred third time"),
    ("the 21st century", "the twenty-first century"),
    # years and decades
    ("in 1999", "in nineteen ninety-nine"),
    ("in 2005", "in two thousand five"),
    ("in 2026", "in twenty twenty-six"),
    ("in 1900", "in nineteen hundred"),
    ("the 1990s", "the nineteen nineties"),
    # times
    ("at 3:30 pm", "at three thirty p m"),
    ("at 7 a.m. sharp", "at seven a m sharp"),
    ("at 12:00", "at twelve o'clock"),
    ("by 9:05", "by nine oh five"),
    # dates (numeric: month/day/year unless the first field is over 12)
    ("12/05/2026", "December fifth, twenty twenty-six"),
    ("25/12/2026", "December twenty-fifth, twenty twenty-six"),
    ("2026-12-05", "December fifth, twenty twenty-six"),
    ("Dec. 5, 2026", "December fifth, twenty twenty-six"),
    ("5 December 2026", "the fifth of December, twenty twenty-six"),
    ("on the 4th of July", "on the fourth of July"),
    ("Jan. 1st", "January first"),
    # currency and percentages
    ("$3.50", "three dollars and fifty cents"),
    ("$1", "one dollar"),
    ("$0.99", "ninety-nine cents"),
    ("£20", "twenty pounds"),
    ("€5", "five euros"),
    ("¥500", "five hundred yen"),
    ("$5 million", "five million dollars"),
    ("$2.5bn", "two point five billion dollars"),
    ("5¢", "five cents"),
    ("25%", "twenty-five percent"),
    ("3.5 %", "three point five percent"),
    # abbreviations
    ("Mr. and Mrs. Smith", "Mister and Missus Smith"),
    ("Dr. Jones", "Doctor Jones"),
    ("St. Louis", "Saint Louis"),
    ("on Baker St., London", "on Baker Street, London"),
    ("cats vs. dogs", "cats versus dogs"),
    ("apples, pears, etc.", "apples, pears, et cetera."),
    ("fruit, e.g. apples", "fruit, for example apples"),
    ("No. 5", "number five"),
    ("AT&T", "AT and T"),
    # units
    ("5 km", "five kilometers"),
    ("1 km", "one kilometer"),
    ("2.5 kg", "two point five kilograms"),
    ("10 cm", "ten centimeters"),
    ("60 mph", "sixty miles per hour"),
    ("37°C", "thirty-seven degrees Celsius"),
    ("98.6°F", "ninety-eight point six degrees Fahrenheit"),
    ("6 ft", "six feet"),
    ("100 W", "one hundred watts"),
    ("1/2 cup", "one half cup"),
    ("2/3", "two thirds"),
    # words that only look like units or abbreviations stay words
    ("5 men", "five men"),
    ("I am here", "I am here"),
]


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


def test_spoken_english_loads_neither_torch_nor_jax():
    code = (
        "import sys, json, jtts.text; jtts.text.normalize('$5 on 5/5/2025', 'spoken_english');"
        "print(json.dumps([m in sys.modules for m in ('torch', 'jax')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, False]
