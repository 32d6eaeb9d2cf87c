"""DTW codebook-0 match rate: time warping forgiven, content not."""

import numpy as np
import pytest

from jtts.code_match import match_rate, match_table


def test_identical_and_stretched_sequences_match_fully():
    a = np.array([5, 5, 7, 1, 1, 9])
    assert match_rate(a, a) == 1.0
    assert match_rate(np.repeat(a, 3), a) == 1.0  # spoken three times slower
    assert match_rate(a, np.repeat(a, 2)) == 1.0


def test_disjoint_codes_never_match():
    assert match_rate(np.arange(10), np.arange(10, 25)) == 0.0


def test_one_substituted_frame_costs_its_share():
    # The diagonal is the cheapest path; its middle pair differs: 2 of 3 agree.
    assert match_rate(np.array([1, 2, 3]), np.array([1, 9, 3])) == pytest.approx(2 / 3)


def test_match_table_pairs_each_row_with_the_next_sentence():
    rng = np.random.default_rng(0)
    refs = [rng.integers(0, 1024, (2, int(n))) for n in rng.integers(40, 80, 5)]
    # "generated" speech: the reference slowed down and with 20% of its frames replaced
    gen = []
    for r in refs:
        g = np.repeat(r, 2, axis=1)
        hit = rng.random(g.shape[1]) < 0.2
        g[0, hit] = rng.integers(0, 1024, hit.sum())
        gen.append(g)
    table = match_table(gen, refs)
    assert table["utterances"] == 5 and len(table["rows"]) == 5
    assert table["own"] > 0.75 and table["mismatched"] < 0.1
    assert table["closer_to_own"] == 1.0
    shifted = match_table(gen, refs[1:] + refs[:1])  # every "own" reference is another's
    assert shifted["own"] < 0.1


def test_empty_or_single_inputs_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        match_rate(np.array([]), np.array([1]))
    with pytest.raises(ValueError, match=">= 2 pairs"):
        match_table([np.zeros((1, 3))], [np.zeros((1, 3))])
