"""Text-only rows for the phoneme head (`data.pron_text`): sentences no recording speaks.

The phoneme head (`model.pron_head`) teaches the text encoder how bytes sound, but only from
the transcripts a store has: a few thousand sentences, and a word heard once or never is
learned from little. Text is cheap. A file of further sentences (one a line: the rest of a
corpus's train split, `python -m speechcorpus text`) gives the head `data.pron_rows` more rows
every training step, read by the text encoder alone (no audio, no decoder), so the encoder
also learns the sound of spellings the recordings never say.

The rows are as long as their batch's text (its bucket's), so they add no compiled shape and
no padding to the longest line: a batch draws among the lines that fit it. Which lines a step
reads is a pure function of (seed, epoch, position) and the batch's text length, the data
loader's state, so a resumed run reads exactly the rows it would have read.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection
from pathlib import Path

import numpy as np

from jtts.config import Config
from jtts.data import encode_text, phoneme_targets, round_up

STREAM = 7  # keeps these draws apart from the loader's other random streams


class PronText:
    """`data.pron_text`'s lines as model positions and phoneme targets, and each batch's
    draw. A line whose positions are `held_out` (a validation transcript's) is left out, so
    validation stays text the model never trained on."""

    def __init__(
        self,
        cfg: Config,
        row_multiple: int,
        text_lens: Collection[int],
        held_out: Collection[tuple[int, ...]] = (),
    ):
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
        self.longest = max(text_lens)  # the longest batch text: no batch could hold more
        for line in lines:
            tokens = encode_text(line, d.text_normalizer, m.text_units)
            if len(tokens) > self.longest:
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
        # shortest first: the lines that fit a batch's text are a prefix
        order = sorted(range(len(self.tokens)), key=lambda i: len(self.tokens[i]))
        self.tokens = [self.tokens[i] for i in order]
        self.phones = [self.phones[i] for i in order]
        lengths = [len(t) for t in self.tokens]
        self.fit = {s: bisect.bisect_right(lengths, s) for s in sorted(set(text_lens))}
        self.rows = round_up(d.pron_rows, row_multiple)  # whole per device and micro-batch

    def draw(self, epoch: int, position: int, text_len: int) -> np.ndarray:
        """The R line indices of the batch at (epoch, position) of a training epoch, among the
        lines that fit its text length `text_len`; -1 where none does."""
        if not self.fit[text_len]:
            return np.full(self.rows, -1)
        rng = np.random.default_rng([self.seed, epoch, position, STREAM])
        return rng.integers(0, self.fit[text_len], self.rows)

    def host_rows(self, lines: np.ndarray, text_len: int) -> dict[str, np.ndarray]:
        """`lines` padded to `text_len`: ids, mask, phones (0 after them) and phones_ok
        (False for -1, an empty row)."""
        n, s = len(lines), text_len
        out = {
            "ids": np.zeros((n, s), np.int32),
            "mask": np.zeros((n, s), bool),
            "phones": np.zeros((n, s), np.int32),
            "phones_ok": lines >= 0,
        }
        for j, i in enumerate(int(x) for x in lines):
            if i < 0:
                continue
            tokens, phones = self.tokens[i], self.phones[i]
            out["ids"][j, : len(tokens)] = tokens
            out["mask"][j, : len(tokens)] = True
            out["phones"][j, : len(phones)] = phones
        return out
