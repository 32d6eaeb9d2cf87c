"""The Whisper text front end against openai-whisper's own tiktoken encoding."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from jtts import text


@pytest.fixture(scope="module")
def tok():
    return text.get_tokenizer("whisper")


@pytest.fixture(scope="module")
def reference():
    """openai-whisper's tokenizer (the independent reference), as the package itself builds it."""
    whisper_tokenizer = pytest.importorskip("whisper.tokenizer")
    return whisper_tokenizer.get_tokenizer(multilingual=True).encoding


def _strings(shared_data) -> list[str]:
    rows = list(
        csv.reader(
            open(shared_data / "ljspeech_lj001" / "metadata.csv"),
            delimiter="|",
            quoting=csv.QUOTE_NONE,
        )
    )
    lj = [r[1] for r in rows] + [r[2] for r in rows]
    numbers = [f"{n}" for n in (0, 7, 42, 1999, 2024, 10**6, 3.14159, -17, 1e-9)]
    numbers += [
        "1,234,567.89",
        "No. 5",
        "3rd",
        "21st century",
        "1/2 cup",
        "98.6°F",
        "+44 20 7946 0958",
    ]
    money = ["$5", "$5.99", "€20", "£1,000", "¥500", "₹10 lakh", "USD 3.50", "5¢"]
    abbrev = [
        "Dr. Smith",
        "Mr. and Mrs. Jones",
        "e.g.",
        "i.e.",
        "etc.",
        "U.S.A.",
        "NASA",
        "St. Louis",
        "Prof. J. R. R. Tolkien",
        "approx. 3 km",
        "vs.",
        "Jan. 1st",
    ]
    scripts = [
        "café",
        "naïve résumé",
        "Ångström",
        "Straße",
        "Привет, мир",
        "你好，世界",
        "こんにちは",
        "안녕하세요",
        "مرحبا بالعالم",
        "שלום",
        "नमस्ते",
        "Γειά σου",
        "ሰላም",
        "ไทย",
        "Tiếng Việt",
    ]
    emoji = ["🎉", "I ❤️ TTS", "👩‍👩‍👧‍👦 family", "🇺🇸🇫🇷", "a🙂b"]
    edge = [
        "",
        " ",
        "   ",
        "\n",
        "\t\t",
        " \n \n ",
        "<|endoftext|>",
        "<|startoftranscript|> hi",
        "don't",
        "It's",
        "'s",
        "\u200b",
        "a\u0301",
        "x" * 100,
        "word " * 50,
    ]
    long_text = [("The quick brown fox jumps over the lazy dog. " * 230)[:10_000]]
    mixed = [f"{a} {b}" for a, b in zip(lj[:150], scripts * 10, strict=False)]
    return lj + numbers + money + abbrev + scripts + emoji + edge + long_text + mixed


def test_ids_match_whisper_tiktoken(tok, reference, shared_data):
    strings = _strings(shared_data)
    assert len(strings) >= 500
    for s in strings:
        assert tok.encode(s) == reference.encode(s, disallowed_special=()), repr(s[:80])


def test_batch_encode_matches_single(tok, shared_data):
    strings = _strings(shared_data)[:50]
    assert tok.encode_batch(strings) == [tok.encode(s) for s in strings]


def test_decode_round_trip(tok, shared_data):
    for s in _strings(shared_data):
        assert tok.decode(tok.encode(s)) == s, repr(s[:80])


def test_vocab_and_special_ids(tok, reference):
    assert tok.vocab_size == 51865 == reference.n_vocab
    assert tok.eot == reference.encode_single_token("<|endoftext|>") == 50257
    assert tok.sot == reference.encode_single_token("<|startoftranscript|>")
    assert tok.encode("") == []


def test_tokenizer_is_cached_on_disk(tmp_path):
    first = text.build_from_whisper_bpe(tmp_path)
    (cached,) = tmp_path.glob("whisper-multilingual-*/tokenizer.json")
    again = text.build_from_whisper_bpe(tmp_path)
    assert cached.stat().st_size > 1_000_000
    assert first.encode("hello there").ids == again.encode("hello there").ids


def test_hf_cache_is_preferred(tmp_path):
    """A tokenizer in the Hugging Face cache layout is loaded before the offline rebuild."""
    snap = tmp_path / "models--openai--whisper-small" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    from transformers import PreTrainedTokenizerFast

    backend = text.build_from_whisper_bpe(tmp_path / "build")
    PreTrainedTokenizerFast(tokenizer_object=backend).save_pretrained(snap)
    (tmp_path / "models--openai--whisper-small" / "refs").mkdir()
    (tmp_path / "models--openai--whisper-small" / "refs" / "main").write_text("abc123")
    tok = text.get_tokenizer("whisper", hf_cache_dir=str(tmp_path))
    assert tok.source == "hf-cache"
    assert tok.encode("Printing, in the only sense") == text.get_tokenizer().encode(
        "Printing, in the only sense"
    )


def test_offline_never_waits(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert text._hub_reachable(timeout=30) is False


def test_unknown_names():
    with pytest.raises(text.TextError, match="unknown tokenizer"):
        text.get_tokenizer("bert")
    with pytest.raises(text.TextError, match="unknown text normalizer 'x'"):
        text.get_normalizer("x")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Dr. Smith paid $5.50!", "doctor smith paid $5.50"),
        ("Twenty one   CATS.", "21 cats"),
        ("Café  déjà vu", "cafe deja vu"),
    ],
)
def test_whisper_english_normalizer(raw, want):
    assert text.normalize(raw, "whisper_english") == want


def test_normalizers_agree_with_whisper_package():
    pytest.importorskip("whisper")
    from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

    samples = ["Mr. O'Neil's 2nd car costs $3,000.", "It's 5 o'clock, isn't it?", "Ünïcödé—text…"]
    for s in samples:
        assert text.normalize(s, "whisper_english") == EnglishTextNormalizer()(s)
        assert text.normalize(s, "whisper_basic") == BasicTextNormalizer()(s)
    assert text.normalize("  a\u00a0b\t c ", "nfkc") == "a b c"


def test_import_loads_neither_torch_nor_jax_nor_transformers(tmp_path):
    """The offline front end of a jtts.sample call (no Hugging Face copy of the tokenizer):
    transformers' package import alone costs 1 s."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}
    code = (
        "import sys, json, jtts.text, codec_bridge.format, codec_bridge;"
        "jtts.text.get_tokenizer().encode('hi'); jtts.text.normalize('Hi', 'spoken_english');"
        "print(json.dumps([m in sys.modules for m in ('torch', 'jax', 'transformers')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, False, False]
    assert importlib.util.find_spec("whisper") is not None
