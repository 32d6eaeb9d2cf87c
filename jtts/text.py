"""Text front end: Whisper's multilingual BPE as a fast (`tokenizers`) tokenizer, and text
normalizers.

Loading order for the tokenizer: a Hugging Face ``openai/whisper-small`` tokenizer already in the
local cache, or from the hub when it answers within a second; otherwise the same vocabulary
rebuilt from the BPE file that the ``openai-whisper`` package ships, converted once with
`transformers`' tiktoken converter and cached on disk, then read by `tokenizers` alone.
Nothing here imports torch or jax. The ``whisper`` package is only located on disk, never
imported (its ``__init__`` imports torch). Offline, with no Hugging Face copy of the tokenizer,
the ``transformers`` package (1 s of imports) is not imported either, after the first
conversion: the tokenizer file is read by `tokenizers`, and transformers' English normalizer
module is loaded from its file.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import socket
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from huggingface_hub import try_to_load_from_cache
from tokenizers import Tokenizer

from codec_bridge.cache import cache_dir

HF_REPO = "openai/whisper-small"
# Whisper's pre-tokenizer pattern (GPT-2's), from whisper/tokenizer.py.
WHISPER_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
NUM_LANGUAGES = 99  # the multilingual vocabulary of Whisper v1/v2 (51865 ids); v3 adds one.
NORMALIZERS = ("whisper_english", "whisper_basic", "nfkc", "spoken_english")


class TextError(Exception):
    """The text front end cannot be built or the input cannot be tokenized."""


def _package_dir(name: str, dist: str) -> Path:
    """Where package `name` (pip's `dist`) is installed, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise TextError(f"the {dist} package is not installed (pip install {dist})")
    return Path(spec.submodule_search_locations[0])


def _whisper_dir() -> Path:
    return _package_dir("whisper", "openai-whisper")


def _whisper_languages() -> list[str]:
    """Language codes in Whisper's order, read from its tokenizer.py without importing it."""
    src = (_whisper_dir() / "tokenizer.py").read_text(encoding="utf-8")
    block = src[src.index("LANGUAGES = {") : src.index("}", src.index("LANGUAGES = {"))]
    return re.findall(r'^\s*"([a-z]{2,3}|haw|yue)":', block, flags=re.M)


def whisper_special_tokens(num_languages: int = NUM_LANGUAGES) -> list[str]:
    """Whisper's special tokens in id order (they follow the 50257 BPE ranks)."""
    langs = _whisper_languages()[:num_languages]
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{lang}|>" for lang in langs],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
        *[f"<|{i * 0.02:.2f}|>" for i in range(1501)],
    ]


def _whisper_bpe() -> Path:
    bpe = _whisper_dir() / "assets" / "multilingual.tiktoken"
    if not bpe.exists():
        raise TextError(f"{bpe}: Whisper BPE file is missing from the openai-whisper package")
    return bpe


@cache
def whisper_token_bytes() -> tuple[bytes, ...]:
    """Every Whisper id's spelling, in id order: a BPE token's bytes (the BPE file lists them
    by rank, which is the id), then each special token's name (``<|endoftext|>``, ...)."""
    lines = _whisper_bpe().read_text(encoding="ascii").split()
    ranked = dict(zip(map(int, lines[1::2]), map(base64.b64decode, lines[0::2]), strict=True))
    bpe = tuple(ranked[i] for i in range(len(ranked)))
    return bpe + tuple(t.encode() for t in whisper_special_tokens())


@dataclass(frozen=True)
class TextTokenizer:
    """Text ↔ Whisper token ids. ``encode`` returns text tokens only (no special tokens)."""

    name: str
    source: str  # 'hf-cache', 'hf-hub' or 'whisper-bpe'
    backend: Tokenizer
    vocab_size: int
    eot: int  # <|endoftext|>
    sot: int  # <|startoftranscript|>

    def encode(self, text: str) -> list[int]:
        # Special-token strings inside user text are plain text, as in tiktoken's
        # encode(..., disallowed_special=()).
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)


def _wrap(backend: Tokenizer, source: str) -> TextTokenizer:
    backend.encode_special_tokens = True
    eot = backend.token_to_id("<|endoftext|>")
    sot = backend.token_to_id("<|startoftranscript|>")
    return TextTokenizer("whisper", source, backend, backend.get_vocab_size(True), eot, sot)


def _hub_reachable(timeout: float = 1.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("", "0"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_hf(hf_cache_dir: str | None, local_only: bool) -> Tokenizer | None:
    """The hub's tokenizer (its `tokenizers` backend); offline, only where the cache holds it,
    so that `transformers` is imported only then."""
    try:
        if local_only and not isinstance(
            try_to_load_from_cache(HF_REPO, "tokenizer.json", cache_dir=hf_cache_dir), str
        ):
            return None
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(
            HF_REPO, cache_dir=hf_cache_dir, local_files_only=local_only
        ).backend_tokenizer
    except (OSError, ValueError):
        return None


def build_from_whisper_bpe(out_dir: Path | None = None) -> Tokenizer:
    """The ``openai-whisper`` BPE file as a fast tokenizer, converted on first use and cached
    in ``out_dir``."""
    bpe = _whisper_bpe()
    digest = hashlib.sha256(bpe.read_bytes()).hexdigest()[:16]
    out = (out_dir or cache_dir() / "tokenizers") / f"whisper-multilingual-{digest}"
    tok_file = out / "tokenizer.json"
    if tok_file.exists():
        return Tokenizer.from_file(str(tok_file))
    from transformers.convert_slow_tokenizer import TikTokenConverter

    specials = whisper_special_tokens()
    backend = TikTokenConverter(
        vocab_file=str(bpe), pattern=WHISPER_PATTERN, extra_special_tokens=specials
    ).converted()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tokenizer.{os.getpid()}.json"
    backend.save(str(tmp))
    os.replace(tmp, tok_file)
    (out / "source.json").write_text(json.dumps({"bpe": str(bpe), "sha256_16": digest}))
    return Tokenizer.from_file(str(tok_file))


@cache
def get_tokenizer(name: str = "whisper", *, hf_cache_dir: str | None = None) -> TextTokenizer:
    """The tokenizer the model uses, loaded without ever waiting on a missing network."""
    if name != "whisper":
        raise TextError(f"unknown tokenizer {name!r} (known: 'whisper')")
    hf = _from_hf(hf_cache_dir, local_only=True)
    if hf is not None:
        return _wrap(hf, "hf-cache")
    if _hub_reachable():
        hf = _from_hf(hf_cache_dir, local_only=False)
        if hf is not None:
            return _wrap(hf, "hf-hub")
    return _wrap(build_from_whisper_bpe(), "whisper-bpe")


def _nfkc(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


@cache
def _english_normalizer_module():
    """`transformers`' port of Whisper's normalizers (it needs only `regex`), loaded from its
    file: importing the package would cost a second. A transformers whose file moved or needs
    more is imported the usual way."""
    path = _package_dir("transformers", "transformers") / "models/whisper/english_normalizer.py"
    try:
        module_spec = importlib.util.spec_from_file_location("jtts._english_normalizer", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    except (OSError, ImportError):
        from transformers.models.whisper import english_normalizer

        return english_normalizer


@cache
def get_normalizer(name: str) -> Callable[[str], str]:
    """A text normalizer by name; the name is recorded in the run config so sampling matches.

    `spoken_english` is `jtts.verbalize` ("$20" -> "twenty dollars") then `whisper_english`
    without its number step, which would turn the spoken words back into "$20".
    """
    if name == "nfkc":
        return _nfkc
    en = _english_normalizer_module()

    if name == "whisper_basic":
        return en.BasicTextNormalizer()
    if name in ("whisper_english", "spoken_english"):
        spelling = json.loads((_whisper_dir() / "normalizers" / "english.json").read_text())
        english = en.EnglishTextNormalizer(spelling)
        if name == "whisper_english":
            return english
        from jtts.verbalize import verbalize

        english.standardize_numbers = lambda s: s
        return lambda text: english(verbalize(text))
    raise TextError(f"unknown text normalizer {name!r} (known: {', '.join(NORMALIZERS)})")


def normalize(text: str, name: str) -> str:
    return get_normalizer(name)(text)
