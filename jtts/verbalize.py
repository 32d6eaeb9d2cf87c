"""Written English to its spoken form, and sentences, for the text front end.

The model learns to speak what it reads, so "$3.50" must reach it as the words a reader says
("three dollars and fifty cents"), the same at training and at sampling: the `spoken_english`
normalizer (`jtts.text`) runs `verbalize` first. Number words come from `num2words`, in
American style ("two thousand five", not "two thousand and five"). Conventions, where written
English is ambiguous:

- numeric dates are month/day/year ("12/05/2026" is December fifth) unless the first field is
  over 12 (then day/month/year); ISO dates (2026-12-05) are read the same way;
- a lone number from 1100 to 2099 is a year ("in 1999", "1500 people": fifteen hundred);
- "St." before a capitalized word is "Saint" ("St. Louis"), else "Street" ("Main St.,");
  units are case-sensitive ("m" is meters, "M" is not a unit);
- integers of more than 15 digits, or with a leading zero, are read digit by digit.

Sentences are split by a regex (`split_sentences`) that knows the same abbreviations: pysbd,
the rule-based library for this, has had no release since 2021, and NLTK's Punkt needs a
model download that no package registry serves.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from num2words import num2words

MAX_DIGITS = 15  # longer integers are identifiers (phone, serial, account), read digit by digit
NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"  # 1,234,567.89 or 1234.5
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")
MONTHS += ("September", "October", "November", "December")
_MONTH_ABBR = {m[:3]: m for m in MONTHS} | {"Sept": "September"}
MONTH = r"(?P<month>" + "|".join([*MONTHS, *_MONTH_ABBR]) + r")\b\.?"
# Abbreviations with their period, in the case they are written in; "St." is decided by context.
ABBREVIATIONS = {
    "Mr.": "Mister",
    "Mrs.": "Missus",
    "Ms.": "Miz",
    "Dr.": "Doctor",
    "Prof.": "Professor",
    "Jr.": "Junior",
    "Sr.": "Senior",
    "Mt.": "Mount",
    "Ave.": "Avenue",
    "Capt.": "Captain",
    "Gen.": "General",
    "Lt.": "Lieutenant",
    "Col.": "Colonel",
    "Sgt.": "Sergeant",
    "Gov.": "Governor",
    "Rev.": "Reverend",
    "Inc.": "Incorporated",
    "Ltd.": "Limited",
    "Corp.": "Corporation",
    "vs.": "versus",
    "etc.": "et cetera",
    "e.g.": "for example",
    "i.e.": "that is",
    "approx.": "approximately",
    "incl.": "including",
}
# (singular, plural) by unit symbol; matched only right after a number.
UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "m": ("meter", "meters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"),
    "l": ("liter", "liters"),
    "L": ("liter", "liters"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "Hz": ("hertz", "hertz"),
    "kW": ("kilowatt", "kilowatts"),
    "W": ("watt", "watts"),
    "V": ("volt", "volts"),
    "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "ms": ("millisecond", "milliseconds"),
    "min": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
}
# (unit, units, subunit, subunits); yen has no subunit in use.
CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
}
SCALES = {"k": "thousand", "K": "thousand", "m": "million", "M": "million", "bn": "billion"}


def words(n: int, to: str = "cardinal") -> str:
    """num2words in American style: no "and" inside numbers, no commas."""
    return num2words(n, lang="en", to=to).replace(" and ", " ").replace(",", "")


def digits(s: str) -> str:
    return " ".join(words(int(d)) for d in s)


def number(s: str) -> str:
    """'1,234.50' -> 'one thousand two hundred thirty-four point five zero'."""
    whole, _, frac = s.replace(",", "").partition(".")
    long_or_padded = len(whole) > MAX_DIGITS or (len(whole) > 1 and whole[0] == "0")
    spoken = digits(whole) if long_or_padded else words(int(whole))
    return f"{spoken} point {digits(frac)}" if frac else spoken


def year(n: int) -> str:
    return words(n, "year")


def _plural(s: str, singular: str, plural: str) -> str:
    return singular if s == "1" else plural


def _money(m: re.Match) -> str:
    unit, units, sub, subs = CURRENCIES[m["sym"]]
    amount, scale = m["num"].replace(",", ""), m["word"] or SCALES.get(m["abbr"] or "")
    if scale:
        return f"{number(amount)} {scale} {units}"
    whole, _, frac = amount.partition(".")
    if not sub or len(frac) > 2:
        return f"{number(amount)} {_plural(amount, unit, units)}"
    cents = int(frac.ljust(2, "0")) if frac else 0
    said = [f"{number(whole)} {_plural(whole, unit, units)}"] if int(whole) or not cents else []
    if cents:
        said.append(f"{words(cents)} {_plural(str(cents), sub, subs)}")
    return " and ".join(said)


def _time(m: re.Match) -> str:
    hour, minute, ampm = int(m["h"]), m["min"], m["ampm"]
    said = [words(hour)]
    if minute and minute != "00":
        said.append(f"oh {words(int(minute))}" if minute[0] == "0" else words(int(minute)))
    elif not ampm:
        said.append("o'clock")
    if ampm:
        said.append(f"{ampm.lower()} m")
    # "p.m." ends the sentence too when the next word starts one (or nothing follows).
    ends = m["dot"] and re.match(r"\s*(?:[A-Z]|$)", m.string[m.end() :])
    return " ".join(said) + ("." if ends else "")


def _date(m: re.Match, month: int, day: int) -> str:
    """The date spoken ("December fifth, twenty twenty-six", "the fifth of December" when the
    day was written first), or left as written when no such date exists."""
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m[0]
    name, nth = MONTHS[month - 1], words(day, "ordinal")
    day_first = "the" in m.groupdict()  # only that rule has the group
    said = f"{m['the'] or 'the'} {nth} of {name}" if day_first else f"{name} {nth}"
    return f"{said}, {year(int(m['y']))}" if m["y"] else said


def _slash_date(m: re.Match) -> str:
    a, b = int(m["a"]), int(m["b"])
    return _date(m, b, a) if a > 12 else _date(m, a, b)


def _named_month(m: re.Match) -> str:
    month = MONTHS.index(_MONTH_ABBR.get(m["month"], m["month"])) + 1
    return _date(m, month, int(m["day"]))


def _decade(m: re.Match) -> str:
    said = year(int(m["y"]))
    if not m["s"]:
        return said
    return said[:-1] + "ies" if said.endswith("y") else said + "s"


def _fraction(m: re.Match) -> str:
    num, den = int(m["num"]), int(m["den"])
    name = {2: ("half", "halves"), 4: ("quarter", "quarters")}.get(den)
    singular, plural = name or (words(den, "ordinal"), words(den, "ordinal") + "s")
    return f"{words(num)} {singular if num == 1 else plural}"


def _ending(m: re.Match, said: str) -> str:
    """`said` for an abbreviation, with a period if the abbreviation's also ended the text."""
    return said + "." if not m.string[m.end() :].strip() else said


def _abbreviation(m: re.Match) -> str:
    return _ending(m, ABBREVIATIONS[m[0]])


def _unit(m: re.Match) -> str:
    return f"{number(m['num'])} {_plural(m['num'], *UNITS[m['unit']])}"


def _alternation(keys) -> str:
    return "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))


_Y = r"(?:,?\s(?P<y>\d{4})\b)?"  # an optional year after a date
_THE = r"(?:\b(?P<the>[Tt]he)\s)?"  # "the 5th of May" keeps its one "the"
# (pattern, replacement) in order: each rule sees the text the ones before it left.
RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (re.compile(r"(?<!\w)St\.(?=\s+[A-Z])"), "Saint"),
    (re.compile(r"(?<!\w)St\."), lambda m: _ending(m, "Street")),
    (re.compile(rf"(?<!\w)(?:{_alternation(k for k in ABBREVIATIONS)})"), _abbreviation),
    (re.compile(r"\bNo\.\s?(?=\d)|#(?=\d)"), "number "),
    (
        re.compile(
            rf"(?P<sym>[$£€¥])\s?(?P<num>{NUM})"
            r"(?:\s(?P<word>thousand|million|billion|trillion)\b|(?P<abbr>bn|[kKmM])\b)?"
        ),
        _money,
    ),
    (re.compile(rf"(?P<num>{NUM})\s?¢"), lambda m: f"{number(m['num'])} cents"),
    (
        re.compile(r"\b(?P<y>\d{4})-(?P<a>\d{2})-(?P<b>\d{2})\b"),
        lambda m: _date(m, int(m["a"]), int(m["b"])),
    ),
    (re.compile(r"\b(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4})\b"), _slash_date),
    (re.compile(rf"\b{MONTH}\s(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\b{_Y}"), _named_month),
    (
        re.compile(rf"{_THE}\b(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s(?:of\s)?{MONTH}{_Y}"),
        _named_month,
    ),
    (
        re.compile(
            r"\b(?P<h>[01]?\d|2[0-3])(?::(?P<min>[0-5]\d)\b|(?=\s?[AaPp]\.?\s?[Mm]\b))"
            r"(?:\s?(?P<ampm>[AaPp])\.?\s?[Mm]\b(?P<dot>\.)?)?"
        ),
        _time,
    ),
    (re.compile(rf"(?P<num>{NUM})\s?%"), lambda m: f"{number(m['num'])} percent"),
    (re.compile(rf"(?P<num>{NUM})\s?(?P<unit>{_alternation(UNITS)})(?![\w/])"), _unit),
    (re.compile(r"\b(?P<n>\d+)(?:st|nd|rd|th)\b"), lambda m: words(int(m["n"]), "ordinal")),
    (re.compile(r"(?<![\d/])(?P<num>[1-9])/(?P<den>[2-9]|10)(?![\d/])"), _fraction),
    (re.compile(r"(?<![\w.,])(?P<y>1[1-9]\d\d|20\d\d)(?P<s>s)?(?!\w|[.,]\d)"), _decade),
    (re.compile(r"(?:(?<=\s)|^)-(?=\d)"), "minus "),
    (re.compile(NUM), lambda m: f" {number(m[0])} "),
    (re.compile(r"\s*&\s*"), " and "),
    (re.compile(r"[\x00-\x1f\x7f-\x9f]"), " "),  # control characters are not read
]


def verbalize(text: str) -> str:
    """`text` with numbers, dates, times, money, units and abbreviations as spoken words."""
    for pattern, replacement in RULES:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


# Periods that do not end a sentence, in any case: the abbreviations above, month
# abbreviations, "No." and single initials ("J. R. R. Tolkien").
_NOT_AN_END = re.compile(
    rf"(?:(?<!\w)(?:{_alternation([*ABBREVIATIONS, 'St.', 'No.'])})"
    rf"|\b(?:{'|'.join(_MONTH_ABBR)})\.|\b[a-z]\.)$",
    re.I,
)


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`: split after . ! ? and at line breaks, not after "Dr." or "J."."""
    sentences: list[str] = []
    for line in text.splitlines():
        merged: list[str] = []
        for piece in re.split(r"(?<=[.!?…])\s+", line.strip()):
            if merged and _NOT_AN_END.search(merged[-1]):
                merged[-1] = f"{merged[-1]} {piece}"
            else:
                merged.append(piece)
        sentences += [m for m in merged if m]
    return sentences
