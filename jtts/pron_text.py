"""Text-only rows for the phoneme head (`data.pron_text`): sentences no recording speaks.

The phoneme head (`model.pron_head`) teaches the text encoder how bytes sound, but only from
the transcripts a store has: a few thousand sentences, and a word heard once or never is
learned from little. Text is cheap. A file of further sentences (one a line: the rest of a
corpus's train split, `python -m speechcorpus text`) gives the head `data.pron_rows` more rows
every training step, read by the text encoder alone (no audio, no decoder), so the encoder
also learns the sound of spellings the recordings never say.

Which lines a step reads is a pure function of (seed, epoch, position), the data loader's
state, so a resumed run reads exactly the rows it would have read.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from jtts.config import Config
from jtts.data import TEXT_ROUND, encode_text, phoneme_targets, round_up

STREAM = 7  # keeps these draws apart from the loader's other random streams


class PronText:
    """`data.pron_text`'s lines as model positions and phoneme targets, and each batch's
    draw. A line whose positions are `held_out` (a validation transcript's) is left out, so
    validation stays text the model never trained on."""

    def __init__(self, cfg: Config, row_multiple: int, held_out: Collection[tuple[int, ...]] = ()):
        d, m = cfg.data, cfg.model
        self.path, self.seed = Path(d.pron_text), d.seed
        try:
            lines = [s.strip() for s in self.path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"data.pron_text {self.path}: {e}") from None
        lines = [s for s in lines if s]
        self.tokens: list[np.ndarray] = []
        self.phones: list[np.ndarray] = []
        self.counts = dict.fromkeys(("lines", "kept", "too_long", "unfit", "held_out"), 0)
        self.counts["lines"] = len(lines)
        for line in lines:
            tokens = encode_text(line, d.text_normalizer, m.text_units)
            if len(tokens) > m.max_text_len:
                self.counts["too_long"] += 1
                continue
            if tuple(tokens.tolist()) in held_out:
                self.counts["held_out"] += 1
                continue
            phones = phoneme_targets(line, d.text_normalizer, len(tokens))
            if phones is None:
                self.counts["unfit"] += 1
                continue
            self.tokens.append(tokens)
            self.phones.append(phones)
        self.counts["kept"] = len(self.tokens)
        if not self.tokens:
            raise ValueError(f"data.pron_text {self.path}: no usable line ({self.counts})")
        # R rows, whole per device and micro-batch; S' the longest line's positions
        self.rows = round_up(d.pron_rows, row_multiple)
        longest = max(len(t) for t in self.tokens)
        self.text_len = min(round_up(longest, TEXT_ROUND), m.max_text_len)

    def draw(self, epoch: int, position: int) -> np.ndarray:
        """The R line indices of the batch at (epoch, position) of a training epoch."""
        rng = np.random.default_rng([self.seed, epoch, position, STREAM])
        return rng.integers(0, len(self.tokens), self.rows)

    def host_rows(self, lines: np.ndarray) -> dict[str, np.ndarray]:
        """Padded arrays of `lines`: ids, mask, phones (0 after them) and phones_ok."""
        n, s = len(lines), self.text_len
        out = {
            "ids": np.zeros((n, s), np.int32),
            "mask": np.zeros((n, s), bool),
            "phones": np.zeros((n, s), np.int32),
            "phones_ok": np.ones(n, bool),
        }
        for j, i in enumerate(int(x) for x in lines):
            tokens, phones = self.tokens[i], self.phones[i]
            out["ids"][j, : len(tokens)] = tokens
            out["mask"][j, : len(tokens)] = True
            out["phones"][j, : len(phones)] = phones
        return out
