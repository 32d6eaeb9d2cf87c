"""eSpeak NG in-process through its C API (the library that ``espeakng-loader`` ships).

In-process synthesis is ~10x quicker than one ``espeak-ng`` program call per sentence; the
program is the fallback where the pip package is missing."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf


class NoSuchVoice(RuntimeError):
    """The library loaded but lacks the voice: the program would lack it too."""


class Espeak:
    """eSpeak NG through its C API: synchronous synthesis into a Python callback.

    eSpeak holds one voice per process, so a new instance takes the voice over from the last."""

    _AUDIO_OUTPUT_SYNCHRONOUS = 2
    _CHARS_UTF8 = 1
    _POS_CHARACTER = 1
    _RATE = 1

    def __init__(self, voice: str = "en-us", rate: int = 165):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(self._AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data path {data.decode()})")
        callback_t = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )
        self._chunks: list[np.ndarray] = []
        self._callback = callback_t(self._collect)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise NoSuchVoice(f"eSpeak NG has no voice {voice!r}")
        self.lib.espeak_SetParameter(self._RATE, rate, 0)

    def _collect(self, wav, numsamples, events) -> int:
        if numsamples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    def synth(self, text: str) -> np.ndarray:
        """Speech for ``text`` as float32 in [-1, 1] at ``self.sample_rate``."""
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(
            data, len(data), 0, self._POS_CHARACTER, 0, self._CHARS_UTF8, None, None
        )
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err} for {text!r}")
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return pcm.astype(np.float32) / 32768.0


class EspeakProgram:
    """The ``espeak-ng`` program, one call per sentence: where ``espeakng-loader`` is missing."""

    def __init__(self, voice: str = "en-us", rate: int = 165):
        self.exe = shutil.which("espeak-ng") or shutil.which("espeak")
        if self.exe is None:
            raise RuntimeError(
                "no eSpeak NG: pip install espeakng-loader, or apt-get install espeak-ng"
            )
        self.voice, self.rate = voice, rate
        self.sample_rate = 22050

    def synth(self, text: str) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "say.wav"
            args = [self.exe, "-v", self.voice, "-s", str(self.rate), "-w", str(path), text]
            subprocess.run(args, check=True, capture_output=True)
            wav, self.sample_rate = sf.read(path, dtype="float32")
        return wav


def open_espeak(voice: str = "en-us", rate: int = 165) -> Espeak | EspeakProgram:
    """The in-process driver, or the program where the library cannot be loaded."""
    try:
        return Espeak(voice, rate)
    except NoSuchVoice:
        raise
    except (ImportError, OSError, RuntimeError):
        return EspeakProgram(voice, rate)
