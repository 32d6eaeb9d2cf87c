"""Phoneme targets: known words spelled in misaki's alphabet, no phoneme silently dropped."""

import sys

import numpy as np
import pytest
from synthetic import transcripts

from jtts import pronounce
from jtts.config import ConfigError
from jtts.pronounce import N_SYMBOLS, PHONEMES, ctc_fits, phoneme_ids

G2P = pytest.importorskip("hibari.g2p").G2P  # the `voices` extra


def ids(phonemes: str) -> list[int]:
    return [PHONEMES.index(c) + 1 for c in phonemes]


def test_known_words_become_their_phonemes_with_word_boundaries():
    """Stress and punctuation go; the sounds and one boundary between words stay."""
    assert phoneme_ids("cat dog").tolist() == ids("kæt dɔɡ")
    assert phoneme_ids("The sheep sleep.").tolist() == ids("ðə ʃip slip")
    assert phoneme_ids("Wait — what?").tolist() == ids("wAt wʌt")  # one boundary, never two
    assert phoneme_ids("").tolist() == []


def test_ctc_fits_needs_a_position_per_phoneme_and_a_blank_between_equal_ones():
    assert ctc_fits(np.array([1, 2, 3]), 3)
    assert not ctc_fits(np.array([1, 2, 3]), 2)
    assert not ctc_fits(np.array([1, 1, 2]), 3)  # k k needs a blank between
    assert ctc_fits(np.array([1, 1, 2]), 4)
    assert not ctc_fits(np.array([], np.int32), 4)  # nothing to say is no target


def test_every_symbol_the_g2p_emits_is_a_phoneme_or_a_dropped_mark():
    """The table is the G2P's alphabet: only stress, length and punctuation are dropped, so a
    new phoneme in the G2P's output cannot vanish from the targets unnoticed."""
    dropped = set('ˈˌː!"(),.:;?—“”…')
    g2p = G2P()
    emitted = set().union(*(g2p(text) for _, text in transcripts(60)))
    assert emitted - set(PHONEMES) <= dropped, emitted - set(PHONEMES) - dropped
    assert len(set(PHONEMES)) == len(PHONEMES) == N_SYMBOLS - 1


def test_without_hibari_the_switch_is_a_config_error(monkeypatch):
    """jtts.train reports a ConfigError as one line, not a traceback."""
    monkeypatch.setitem(sys.modules, "hibari.g2p", None)
    pronounce._g2p.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"pron_head needs hibari-tts.*\[voices\]"):
            phoneme_ids("cat")
    finally:
        pronounce._g2p.cache_clear()
