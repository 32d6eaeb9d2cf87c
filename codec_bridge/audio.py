"""Reading one audio file into the codec's input, or saying precisely why it cannot be used.

Conversion is `encodec.utils.convert_audio` itself, so the codes of a file equal what a user
gets by calling the encodec package on it. Every failure raises `Skip` with a short reason;
`extract` records it in ``skipped.jsonl`` and moves on.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from encodec.utils import convert_audio

SILENCE_PEAK = 1e-4  # -80 dBFS: below one 14-bit step, i.e. digital silence plus dither


class Skip(Exception):
    """This input cannot be encoded; the message is the reason recorded in skipped.jsonl."""


def _wav_truncated(path: Path) -> str | None:
    """libsndfile silently reads a cut-off WAV as a shorter one; compare the data chunk's
    declared size with the bytes that are really there."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk, length = struct.unpack("<4sI", f.read(8))
            if chunk == b"data":
                have = size - pos - 8
                if length not in (0, 0xFFFFFFFF) and length > have:
                    return f"truncated audio file ({have} of {length} data bytes present)"
                return None
            pos += 8 + length + (length & 1)
    return None


def probe_seconds(path: Path) -> float:
    """Duration from the file header alone (cheap), used to sort utterances by length."""
    if not path.is_file():
        raise Skip(f"transcript without audio ({path} not found)")
    if path.stat().st_size == 0:
        raise Skip("empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as e:
        raise Skip(f"unreadable audio ({e})") from None
    return info.frames / info.samplerate if info.samplerate else 0.0


def load(path: Path, sample_rate: int, channels: int, *, max_seconds: float, min_samples: int):
    """Audio as the codec's float32 input ``[channels, samples]`` at ``sample_rate``."""
    seconds = probe_seconds(path)
    if seconds > max_seconds:
        raise Skip(f"too long ({seconds:.1f} s > --max-seconds {max_seconds:g})")
    reason = _wav_truncated(path)
    if reason:
        raise Skip(reason)
    try:
        with sf.SoundFile(str(path)) as f:
            declared, sr = f.frames, f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        raise Skip(f"unreadable audio ({e})") from None
    if data.shape[0] == 0:
        raise Skip("empty audio (0 samples)")
    if data.shape[0] < declared:
        raise Skip(f"truncated audio file ({data.shape[0]} of {declared} frames decoded)")
    if not np.isfinite(data).all():
        raise Skip("audio contains NaN or infinite samples")
    if np.abs(data).max() < SILENCE_PEAK:
        raise Skip("silent (peak below -80 dBFS)")
    wav = torch.from_numpy(data.T)
    if wav.shape[0] > 2:  # convert_audio takes mono or stereo; downmix as it would for mono
        wav = wav.mean(0, keepdim=True)
    wav = convert_audio(wav, sr, sample_rate, channels)
    if wav.shape[-1] < min_samples:
        raise Skip(
            f"too short ({wav.shape[-1]} samples at {sample_rate} Hz < one codec frame"
            f" of {min_samples})"
        )
    return wav.contiguous()
