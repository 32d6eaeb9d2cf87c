"""Offline speaker judge: whose voice is it? Resemblyzer's pretrained GE2E encoder.

Resemblyzer (``eval`` extra) bundles a GE2E speaker-verification encoder (``pretrained.pt``,
17 MB, in its wheel): 16 kHz mono audio, volume-normalized, long silences cut by WebRTC VAD,
to an L2-normalized 256-d embedding. SIM is the cosine between an utterance's embedding and a
voice's reference centroid (the normalized mean of its reference embeddings), as VALL-E and
its successors report speaker similarity with a verification model; the nearest voice is the
voice whose centroid has the highest cosine, among all voices with references.

References and probes never overlap. Either the references come from a separate corpus
(whose files must not be among the probes), or the first ``k`` utterances of each voice, in
id order, are its references and the rest its probes; every figure is on probes only, for
the recordings and for what was made from the same utterances (resynthesis, synthesis).

A clip with under `MIN_VOICED_SECONDS` of voice once the VAD has cut its silences (silence,
or a word shorter than the VAD's smoothing window) has no embedding: it counts as a miss for
nearest-voice accuracy and is left out of the mean SIM, and ``no_voice`` counts it.
This module imports torch only when the encoder loads.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections import Counter
from collections.abc import Sequence
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from codec_bridge.errors import BridgeError
from codec_bridge.judge.asr import ASR_RATE, to_asr_rate

SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"  # resemblyzer 0.1.4
MIN_VOICED_SECONDS = 0.1
INSTALL = "pip install -e '.[eval]'"


def installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("resemblyzer", "webrtcvad"))


class SpeakerJudge:
    """The bundled encoder on the CPU, loaded once (`speaker_judge`)."""

    def __init__(self):
        if not installed():
            raise BridgeError(f"speaker judge: resemblyzer is not installed ({INSTALL})")
        with warnings.catch_warnings():  # resemblyzer imports a scipy namespace deprecated in 1.x
            warnings.simplefilter("ignore", DeprecationWarning)
            import resemblyzer
            from resemblyzer import hparams

        if hparams.sampling_rate != ASR_RATE:
            raise BridgeError(f"resemblyzer expects {hparams.sampling_rate} Hz, not {ASR_RATE}")
        self.weights = Path(resemblyzer.__file__).parent / "pretrained.pt"
        from codec_bridge.format import file_sha256

        self.sha256 = file_sha256(self.weights)
        if self.sha256 != SHA256:
            raise BridgeError(f"{self.weights}: sha256 {self.sha256}, expected {SHA256}")
        self.encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
        self._preprocess = resemblyzer.preprocess_wav

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """The unit embedding of ``wav`` (``[samples]`` or ``[channels, samples]``), or None
        when less than `MIN_VOICED_SECONDS` of it is voice."""
        x = to_asr_rate(wav, sample_rate)
        if not np.any(x):  # digital silence: Resemblyzer's loudness step would divide by 0
            return None
        x = self._preprocess(x)
        if len(x) < MIN_VOICED_SECONDS * ASR_RATE:
            return None
        return self._encode(x)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        """On one torch thread: the encoder is a small LSTM, and on 2 busy cores torch's
        threads wait on each other (20 FSDD clips: 3.7 s on one thread, 27.7 s on two)."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.encoder.embed_utterance(x)
        finally:
            torch.set_num_threads(threads)

    def judge(self) -> dict[str, str]:
        return {
            "engine": "resemblyzer",
            "version": version("resemblyzer"),
            "model": "GE2E speaker encoder (pretrained.pt bundled with resemblyzer)",
            "sha256": self.sha256,
        }


@cache
def speaker_judge() -> SpeakerJudge:
    return SpeakerJudge()


def split_references(speakers: Sequence[str | None], k: int) -> list[bool]:
    """True for the first ``k`` utterances of each voice in the order given (the references),
    False for the rest (the probes) and for utterances without a voice."""
    if k < 1:
        raise BridgeError(f"--references-per-voice {k}: need at least 1")
    seen: Counter[str] = Counter()
    out = []
    for s in speakers:
        out.append(s is not None and seen[s] < k)
        if s is not None:
            seen[s] += 1
    return out


def centroids(references: Sequence[tuple[str, np.ndarray | None]]) -> dict[str, np.ndarray]:
    """Each voice's normalized mean embedding over its (voiced) references."""
    by_voice: dict[str, list[np.ndarray]] = {}
    for voice, e in references:
        if e is not None:
            by_voice.setdefault(voice, []).append(e)
    return {v: (m := np.mean(es, axis=0)) / np.linalg.norm(m) for v, es in by_voice.items()}


def identify(embedding: np.ndarray | None, cents: dict[str, np.ndarray]) -> dict[str, Any]:
    """Cosine to every centroid, and the nearest voice (None without an embedding)."""
    if embedding is None:
        return {"sims": {}, "taken_for": None}
    sims = {v: float(np.dot(embedding, c)) for v, c in cents.items()}
    return {"sims": sims, "taken_for": max(sims, key=sims.get)}


def voice_figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean SIM to the intended voice, nearest-voice accuracy, and what each voice was taken
    for, over ``rows`` (``speaker``, ``sim``, ``taken_for``), overall and per voice."""

    def summary(rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        sims = [r["sim"] for r in rs if r["sim"] is not None]
        return {
            "sim": float(np.mean(sims)) if sims else None,
            "nearest_voice": sum(r["taken_for"] == r["speaker"] for r in rs) / len(rs),
            "utterances": len(rs),
            "no_voice": sum(r["taken_for"] is None for r in rs),
        }

    voices = sorted({r["speaker"] for r in rows})
    per_voice = {}
    for v in voices:
        rs = [r for r in rows if r["speaker"] == v]
        taken = Counter(r["taken_for"] for r in rs if r["taken_for"] is not None)
        per_voice[v] = {**summary(rs), "taken_for": dict(taken.most_common())}
    return {**(summary(rows) if rows else {}), "voices": per_voice}


def reference_clips(format: str, path: str | Path) -> list[tuple[str, Path]]:
    """(voice, audio path) of every utterance of a reference corpus that names its voice."""
    from codec_bridge.readers import read_corpus

    refs = [(it.speaker, it.path) for it in read_corpus(format, path) if it.speaker]
    refs = [(s, p) for s, p in refs if p.is_file()]
    if not refs:
        raise BridgeError(f"{path}: --speaker-refs has no audio file with a speaker")
    return refs


class SpeakerTally:
    """Speaker figures for `codec_bridge.judge.evaluate`: it shows each utterance's audio of each
    set (`add`); references are embedded from the recordings, probes from every set, and
    `report` judges the probes against the references' centroids.

    ``speakers`` (one per utterance, None for none) and ``paths`` are the evaluated corpus's;
    with ``references`` (voice, path: a separate corpus, shown through `add_reference`) every
    utterance with a voice is a probe, else `split_references` with ``k`` decides."""

    def __init__(
        self,
        speakers: Sequence[str | None],
        paths: Sequence[Path],
        references: Sequence[tuple[str, Path]] | None = None,
        k: int = 3,
    ):
        self.judge = speaker_judge()
        self.speakers = list(speakers)
        if references is not None:
            probes = {Path(p).resolve() for p, s in zip(paths, speakers, strict=True) if s}
            both = sorted(p for _, p in references if Path(p).resolve() in probes)
            if both:
                raise BridgeError(
                    f"{both[0]}: in --speaker-refs and among the utterances judged"
                    f" ({len(both)} files): references and probes must not overlap"
                )
            unknown = sorted({s for s in speakers if s} - {v for v, _ in references})
            if unknown:
                raise BridgeError(f"--speaker-refs has no clip of voice(s) {', '.join(unknown)}")
            self.role = ["probe" if s else None for s in speakers]
            self.rule = "separate reference corpus; every utterance with a voice is a probe"
        else:
            is_ref = split_references(speakers, k)
            self.role = [
                "reference" if r else "probe" if s else None
                for r, s in zip(is_ref, speakers, strict=True)
            ]
            self.rule = f"first {k} utterances of each voice by id are its references"
        self.references: list[tuple[str, np.ndarray | None]] = []
        self.probes: dict[tuple[int, str], np.ndarray | None] = {}

    def add_reference(self, voice: str, wav: np.ndarray, sample_rate: int) -> None:
        self.references.append((voice, self.judge.embed(wav, sample_rate)))

    def add(self, index: int, name: str, wav: np.ndarray, sample_rate: int) -> None:
        """Utterance ``index``'s audio in set ``name`` (original, resynthesis, synthesis)."""
        role = self.role[index]
        if role == "probe":
            self.probes[(index, name)] = self.judge.embed(wav, sample_rate)
        elif role == "reference" and name == "original":
            self.add_reference(self.speakers[index], wav, sample_rate)

    def report(self) -> tuple[dict[str, Any], dict[tuple[int, str], dict[str, Any]]]:
        """The report's ``speaker`` section, and each probe's row by (index, set)."""
        cents = centroids(self.references)
        rows = {}
        for (i, name), e in self.probes.items():
            got = identify(e, cents)
            voice = self.speakers[i]
            rows[(i, name)] = {
                "speaker": voice,
                "sim": got["sims"].get(voice),
                "taken_for": got["taken_for"],
                "sims": got["sims"],
            }
        names = dict.fromkeys(name for _, name in self.probes)
        section = {
            **self.judge.judge(),
            "references": self.rule,
            "reference_clips": dict(
                sorted(Counter(v for v, e in self.references if e is not None).items())
            ),
            "voices": sorted(cents),
            "min_voiced_seconds": MIN_VOICED_SECONDS,
            "sets": {n: voice_figures([r for (_, m), r in rows.items() if m == n]) for n in names},
        }
        return section, rows
