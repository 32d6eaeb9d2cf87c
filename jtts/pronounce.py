"""Phoneme targets for the text encoder: an auxiliary pronunciation loss (issue 25).

A reader that sees only audio must learn each word's sound from the few times it is spoken.
A CTC head on the text encoding, trained to emit the sentence's phonemes, tells the encoder
how its bytes sound directly. The phonemes come from `hibari-tts`'s G2P (misaki's lexicon
and out-of-vocabulary net, Apache-2.0), the one the hibari voice itself speaks from. Stress,
length marks, punctuation (and any letter outside English) are dropped: a CTC label is what the
bytes must say, in order. It reads bytes (`model.text_units=bytes`): a BPE token has fewer
positions than phonemes.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from jtts.config import ConfigError

# misaki's English phoneme letters (hibari's vocab.json, less stress, length and punctuation)
# and a word boundary; id 0 is CTC's blank.
PHONEMES = " AIOQSTWYabcdefhijklmnopqrstuvwxyzæçðŋɐɑɒɔəɚɛɜɡɪɹɾʃʊʌʒʔθᵊᵻʤʧ"
_INDEX = {p: i + 1 for i, p in enumerate(PHONEMES)}
N_SYMBOLS = len(PHONEMES) + 1


@cache
def _g2p():
    try:
        from hibari.g2p import G2P
    except ImportError as e:  # a config the machine cannot train: jtts.train's one line
        raise ConfigError(
            "model.pron_head needs hibari-tts for its phonemes: pip install -e '.[voices]'"
        ) from e
    return G2P()


def phoneme_ids(text: str) -> np.ndarray:
    """int32 phoneme ids (1..N_SYMBOLS-1) of `text`, words separated by one boundary id."""
    kept = "".join(c for c in _g2p()(text) if c in _INDEX)
    return np.asarray([_INDEX[c] for c in " ".join(kept.split())], np.int32)


def ctc_fits(phones: np.ndarray, positions: int) -> bool:
    """Whether CTC can emit `phones` from `positions` text positions: one per phoneme, and a
    blank between two equal neighbours."""
    return 0 < len(phones) + int(np.sum(phones[1:] == phones[:-1])) <= positions
