"""Offline speech recognition to judge intelligibility: pocketsphinx, or Whisper when cached.

pocketsphinx ships an English acoustic model, language model and dictionary in its wheel,
so it works on a machine without network. With a closed vocabulary (a JSGF word loop over
the texts' words, or any JSGF grammar) it is a fair judge of small-vocabulary speech such as
the demo's sentences; with its general language model it is a weak one. Whisper is used only
when its weights are already in the cache (``~/.cache/whisper``), never downloaded.
This module imports neither torch nor jax unless Whisper is used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from codec_bridge.errors import BridgeError

ASR_RATE = 16000
DITHER = 1e-4  # noise amplitude added before recognition (float samples)
WHISPER_MODELS = ("medium.en", "small.en", "base.en", "tiny.en", "medium", "small", "base", "tiny")
_WORD = re.compile(r"[a-z']+")


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


def cached_whisper() -> Path | None:
    """The largest Whisper checkpoint already in the cache, if any."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "whisper"
    return next((root / f"{m}.pt" for m in WHISPER_MODELS if (root / f"{m}.pt").is_file()), None)


class Whisper:
    """openai-whisper from a cached checkpoint, greedy, English."""

    engine = "whisper"

    def __init__(self, checkpoint: Path, device: str = "cpu"):
        import whisper

        self.model = whisper.load_model(str(checkpoint), device=device)
        self.vocabulary = f"open ({checkpoint.stem})"
        self.unknown: list[str] = []

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        out = self.model.transcribe(
            to_asr_rate(wav, sample_rate), language="en", temperature=0.0, fp16=False
        )
        return out["text"].strip()


def recognizer(
    asr: str = "auto",
    *,
    words: list[str] | None = None,
    jsgf: str | Path | None = None,
    device: str = "cpu",
):
    """``auto``: Whisper when cached and no closed vocabulary is asked for, else pocketsphinx."""
    if asr not in ("auto", "pocketsphinx", "whisper"):
        raise BridgeError(f"--asr {asr!r}: choose auto, pocketsphinx or whisper")
    checkpoint = cached_whisper()
    if asr == "whisper" and checkpoint is None:
        raise BridgeError("--asr whisper: no Whisper checkpoint in ~/.cache/whisper (offline)")
    if asr == "whisper" or (asr == "auto" and checkpoint and not words and jsgf is None):
        return Whisper(checkpoint, device)
    return Sphinx(words, jsgf)
