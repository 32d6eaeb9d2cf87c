"""A small speech corpus built on the spot: template sentences spoken by eSpeak NG.

The demo must run on a fresh machine with no network and no dataset, so it makes its own data:
a seeded template grammar writes a few hundred distinct sentences, and eSpeak NG (the library
that ``espeakng-loader`` ships, driven in-process through ctypes, or the ``espeak-ng`` program)
speaks them. The corpus is written in LJ Speech layout (``metadata.csv`` + ``wavs/``) so the
codec bridge reads it with ``--format ljspeech``.
"""

from __future__ import annotations

import ctypes
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

SUBJECTS = [
    "the old man",
    "a young girl",
    "my neighbour",
    "the teacher",
    "our captain",
    "the tired farmer",
    "a quiet student",
    "the baker",
    "her brother",
    "the small dog",
    "the doctor",
    "a busy painter",
    "the pilot",
    "his mother",
    "the king",
]
VERBS = [
    "found",
    "painted",
    "carried",
    "opened",
    "watched",
    "cleaned",
    "sold",
    "borrowed",
    "lost",
    "repaired",
    "described",
    "wanted",
    "remembered",
    "admired",
    "moved",
]
ADJECTIVES = [
    "red",
    "heavy",
    "wooden",
    "broken",
    "shiny",
    "tiny",
    "golden",
    "ancient",
    "yellow",
    "empty",
    "warm",
    "strange",
    "green",
    "silver",
    "round",
]
OBJECTS = [
    "box",
    "window",
    "letter",
    "boat",
    "garden gate",
    "clock",
    "lamp",
    "basket",
    "bicycle",
    "bridge",
    "piano",
    "kettle",
    "map",
    "ladder",
    "blanket",
]
PLACES = [
    "near the river",
    "in the morning",
    "after dinner",
    "at the station",
    "by the sea",
    "before the storm",
    "in the village",
    "on a cold night",
    "under the trees",
    "at the market",
    "behind the house",
    "during the summer",
]
SAMPLE_RATE = 22050


TEMPLATES = (
    "{S} {v} the {a} {o} {p}.",
    "{P}, {s} {v} a {a} {o}.",
    "{S} {v} the {o} and the {a2} {o2}.",
)


def jsgf() -> str:
    """The template grammar in JSGF, for an ASR judge that knows what the demo can say."""

    def rule(name: str, options: list[str]) -> str:
        return f"<{name}> = {' | '.join(options)} ;"

    public = " | ".join(
        [
            "<s> <v> the <a> <o> <p>",
            "<p> <s> <v> a <a> <o>",
            "<s> <v> the <o> and the <a> <o>",
        ]
    )
    return "\n".join(
        [
            "#JSGF V1.0;",
            "grammar demo;",
            rule("s", SUBJECTS),
            rule("v", VERBS),
            rule("a", ADJECTIVES),
            rule("o", OBJECTS),
            rule("p", PLACES),
            f"public <sentence> = {public} ;",
            "",
        ]
    )


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences from the template grammar, in a seeded random order.

    Three templates put the same words at different places and give sentences of different
    lengths, so a model must read the text (not count frames) to say it."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        s = rng.choice(SUBJECTS)
        (a, a2), (o, o2) = rng.sample(ADJECTIVES, 2), rng.sample(OBJECTS, 2)
        p = rng.choice(PLACES)
        text = rng.choice(TEMPLATES).format(
            S=s.capitalize(),
            s=s,
            v=rng.choice(VERBS),
            a=a,
            a2=a2,
            o=o,
            o2=o2,
            p=p,
            P=p.capitalize(),
        )
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


class Espeak:
    """eSpeak NG through its C API: synchronous synthesis into a Python callback."""

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
            raise RuntimeError(f"eSpeak NG has no voice {voice!r}")
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


def _synth_with_program(text: str, path: Path) -> None:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise RuntimeError("no eSpeak NG: pip install espeakng-loader, or install espeak-ng")
    subprocess.run([exe, "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)


def build_corpus(out: str | Path, n: int = 300, seed: int = 0) -> Path:
    """Write ``n`` spoken sentences to ``out`` in LJ Speech layout; returns ``out``.

    Already-built corpora of the same size are reused, so re-running the demo is quick."""
    texts = sentences(n, seed)
    return speak(out, {f"DEMO-{i:04d}": text for i, text in enumerate(texts)})


def speak(out: str | Path, texts: dict[str, str]) -> Path:
    """Write ``texts`` (id -> sentence) spoken by eSpeak NG to ``out`` in LJ Speech layout.

    A folder whose metadata already lists exactly these ids and texts is reused as it is."""
    out = Path(out)
    meta = out / "metadata.csv"
    lines = [f"{utt_id}|{text}|{text}" for utt_id, text in texts.items()]
    if meta.exists() and meta.read_text(encoding="utf-8").splitlines() == lines:
        return out
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    try:
        engine: Espeak | None = Espeak()
    except (ImportError, OSError, RuntimeError):
        engine = None
    for utt_id, text in texts.items():
        wav = out / "wavs" / f"{utt_id}.wav"
        if engine is not None:
            sf.write(wav, engine.synth(text), engine.sample_rate, subtype="PCM_16")
        else:
            _synth_with_program(text, wav)
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def held_out(n: int = 3, seed: int = 0, corpus_size: int = 300) -> list[str]:
    """Sentences of the same grammar that are not in the corpus (for the demo's synthesis)."""
    seen = set(sentences(corpus_size, seed))
    return [s for s in sentences(corpus_size + 50 * n, seed + 1) if s not in seen][:n]
