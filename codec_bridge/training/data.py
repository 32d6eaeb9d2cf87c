"""Audio for codec training: a corpus read once into memory, a held-out set, seeded crops.

Any corpus a bridge reader understands works; transcripts are not needed. Files `extract`
would skip (unreadable, silent, too short) are skipped here too, counted, and named in the
summary. Crops come from the training audio concatenated, so every second of audio is
equally likely and crops may span two utterances, which does not matter to a codec.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from codec_bridge.audio import Skip, load
from codec_bridge.errors import BridgeError
from codec_bridge.readers import Item, read_corpus


@dataclass
class Utterance:
    id: str
    text: str | None
    path: Path
    wav: torch.Tensor  # [channels, samples] at the codec's rate


@dataclass
class Corpus:
    train: list[Utterance]
    val: list[Utterance]
    skipped: list[tuple[str, str]]  # (path, reason)
    sample_rate: int

    @property
    def train_seconds(self) -> float:
        return sum(u.wav.shape[-1] for u in self.train) / self.sample_rate


def _rank(utt_id: str) -> bytes:
    return hashlib.sha256(utt_id.encode("utf-8")).digest()


def held_out(items: list[Item], n: int) -> set[str]:
    """Ids of the ``n`` held-out utterances: lowest hash of the id, independent of order."""
    return {it.id for it in sorted(items, key=lambda it: _rank(it.id))[:n]}


def load_corpus(
    format: str,
    path: str | Path,
    *,
    sample_rate: int,
    channels: int,
    val_utterances: int,
    min_seconds: float,
    max_seconds: float = 60.0,
    limit: int | None = None,
) -> Corpus:
    """Read and convert every usable utterance; raises `BridgeError` when too few remain."""
    items = read_corpus(format, path)[:limit]
    val_ids = held_out(items, val_utterances)
    corpus = Corpus([], [], [], sample_rate)
    for it in items:
        try:
            wav = load(
                it.path,
                sample_rate,
                channels,
                max_seconds=max_seconds,
                min_samples=int(min_seconds * sample_rate),
            )
        except Skip as e:
            corpus.skipped.append((str(it.path), str(e)))
            continue
        (corpus.val if it.id in val_ids else corpus.train).append(
            Utterance(it.id, it.normalized or it.text, it.path, wav)
        )
    if not corpus.train:
        raise BridgeError(
            f"{path}: no usable training audio ({len(corpus.skipped)} files skipped,"
            f" {len(corpus.val)} held out)"
        )
    return corpus


class Crops:
    """Random ``[batch, channels, crop]`` windows of the training audio, from a generator
    whose state the checkpoint saves."""

    def __init__(self, utterances: list[Utterance], crop: int):
        self.audio = torch.cat([u.wav for u in utterances], dim=-1)
        if self.audio.shape[-1] < crop:
            raise BridgeError(
                f"training audio has {self.audio.shape[-1]} samples, fewer than one crop of {crop}"
            )
        self.crop = crop

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        starts = torch.randint(0, self.audio.shape[-1] - self.crop + 1, (batch,), generator=gen)
        return torch.stack([self.audio[:, s : s + self.crop] for s in starts.tolist()])
