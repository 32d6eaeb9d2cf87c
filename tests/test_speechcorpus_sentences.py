"""Sentence cleaning and the train / held-out split: held-out text is never trained on."""

import random

import pytest

from speechcorpus.sentences import clean, split, unseen_share, words


def test_clean_keeps_plain_sentences_of_4_to_30_words():
    lines = [
        "The climate affected their health and spirits.",
        "  the climate   affected their health, and spirits!",  # same words: a duplicate
        "Too short here.",
        "Four words are enough.",
        " ".join(["Word"] + ["more"] * 29) + ".",  # 30 words
        " ".join(["Word"] + ["more"] * 30) + ".",  # 31 words
        "In 1913 it was printed.",  # digits
        "After his reversion home, [he] was spoiled.",  # brackets
        "What a pleasant it is . . . to swagger!",  # elision
        "no capital letter at the start.",
        "No full stop at the end",
        "Caf\u00e9 owners were not amused today.",  # not ASCII
        "It\u2019s a fine day for a walk.",  # curly apostrophe made plain
        "He said -- nothing at all.",
    ]
    assert clean(lines) == [
        "The climate affected their health and spirits.",
        "Four words are enough.",
        lines[4],
        "It's a fine day for a walk.",
    ]


def test_words_are_lower_case_and_keep_apostrophes():
    assert words("It's the KING'S well-known map, O night!") == [
        "it's",
        "the",
        "king's",
        "well",
        "known",
        "map",
        "o",
        "night",
    ]


def _corpus(n=400, seed=0):
    """Sentences over a small common vocabulary, some with a rare word of their own."""
    rng = random.Random(seed)
    common = ["the", "a", "man", "dog", "saw", "red", "big", "house", "ran", "to", "old", "sea"]
    out = set()
    while len(out) < n:
        ws = [rng.choice(common) for _ in range(rng.randint(4, 9))]
        if rng.random() < 0.3:
            ws.append("zq" + "".join(chr(97 + int(d)) for d in str(len(out))))  # zqbc: 12
        out.add(" ".join(ws).capitalize() + ".")
    return sorted(out)


def test_split_invariants():
    corpus = _corpus()
    parts = split(corpus, n_heldout=60, n_unseen=25, seed=3)
    assert len(parts.heldout) == 60 and len(parts.unseen) == 25
    assert len(parts.train) + len(parts.heldout) == len(corpus)
    assert sorted(parts.train + parts.heldout) == corpus
    assert not set(parts.train) & set(parts.heldout)
    vocab = {w for s in parts.train for w in words(s)}
    assert all(set(words(s)) - vocab for s in parts.unseen)
    assert parts.unseen == parts.heldout[:25]
    assert unseen_share(parts.unseen, parts.train) > 0
    assert parts == split(corpus, 60, 25, seed=3)
    assert parts.train != split(corpus, 60, 25, seed=4).train


def test_split_refuses_what_it_cannot_give():
    corpus = _corpus(50)
    with pytest.raises(ValueError, match="cannot hold out 60"):
        split(corpus, 60, 10)
    with pytest.raises(ValueError, match="word of their own"):
        split(corpus, 45, 45)


def test_unseen_share_counts_word_tokens():
    train = ["The dog saw the sea."]
    assert unseen_share(["The cat saw the cat.", "A dog."], train) == pytest.approx(3 / 7)
    assert unseen_share([], train) == 0
