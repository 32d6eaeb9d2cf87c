"""Text-only rows for the phoneme head: each line's positions and phonemes, bad lines counted
and skipped, and draws that depend on the loader's state alone."""

from pathlib import Path

import numpy as np
import pytest
from synthetic import PRON

from jtts.config import ConfigError, apply_overrides, load_config
from jtts.data import encode_text
from jtts.pron_text import PronText
from jtts.pronounce import phoneme_ids
from jtts.text import normalize

pytest.importorskip("hibari.g2p")  # the `voices` extra
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LINES = ["The cat sat on the mat.", "", "  Dogs bark at night.  ", "X", "A whale " * 12, "Hm."]


def config(path, *overrides):
    base = [*PRON, f"data.pron_text={path}", "data.pron_rows=5", "model.max_text_len=64"]
    return apply_overrides(load_config(CONFIGS / "tiny.yaml"), [*base, *overrides])


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def test_lines_become_positions_and_phonemes_and_bad_ones_are_counted(text_file):
    """Blank lines are no lines; a line longer than any batch's text, or with more phonemes
    than CTC can emit from its bytes ("X" is three sounds from two positions), is counted and
    skipped. The rows are padded to the batch's text length."""
    cfg = config(text_file)
    rows = PronText(cfg, row_multiple=2, text_lens=[32, 64])
    assert rows.counts == {"lines": 5, "kept": 3, "too_long": 1, "unfit": 1, "held_out": 0}
    assert rows.rows == 6  # 5 rounded up to whole rows per device
    kept = ["Hm.", "Dogs bark at night.", "The cat sat on the mat."]  # shortest first
    arrays = rows.host_rows(np.array([2, 0, 0, 1]), 32)
    assert arrays["ids"].shape == arrays["phones"].shape == (4, 32)
    assert arrays["phones_ok"].all()
    for j, i in enumerate([2, 0, 0, 1]):
        want = encode_text(kept[i], cfg.data.text_normalizer, "bytes")
        phones = phoneme_ids(normalize(kept[i], cfg.data.text_normalizer))
        n, p = len(want), len(phones)
        np.testing.assert_array_equal(arrays["ids"][j, :n], want)
        assert arrays["mask"][j].sum() == n and arrays["mask"][j, :n].all()
        np.testing.assert_array_equal(arrays["phones"][j, :p], phones)
        assert not arrays["phones"][j, p:].any() and not arrays["ids"][j, n:].any()
    assert rows.host_rows(np.array([1]), 64)["ids"].shape == (1, 64)


def test_a_batch_draws_among_the_lines_that_fit_its_text(text_file):
    """A batch of short texts draws only lines as short; where none fits its rows are empty
    and carry no phoneme target."""
    cfg = config(text_file)
    lengths = sorted(
        len(encode_text(line, cfg.data.text_normalizer, "bytes"))
        for line in ("Hm.", "Dogs bark at night.", "The cat sat on the mat.")
    )
    short, tiny = lengths[0], lengths[0] - 1
    rows = PronText(cfg, row_multiple=1, text_lens=[tiny, short, 64])
    assert rows.fit == {tiny: 0, short: 1, 64: 3}
    assert (rows.draw(0, 3, short) == 0).all()
    assert set(np.concatenate([rows.draw(0, p, 64) for p in range(20)])) == {0, 1, 2}
    none = rows.draw(0, 3, tiny)
    np.testing.assert_array_equal(none, -1)
    empty = rows.host_rows(none, tiny)
    assert not empty["phones_ok"].any() and not empty["mask"].any()


def test_each_batch_draws_its_rows_from_the_loader_state_alone(text_file):
    """Two draws at one (epoch, position) agree, so a resumed run reads the same rows; other
    positions, epochs or seeds draw others."""
    rows = PronText(config(text_file), row_multiple=1, text_lens=[64])
    first = rows.draw(0, 3, 64)
    assert first.shape == (5,) and ((first >= 0) & (first < 3)).all()
    np.testing.assert_array_equal(rows.draw(0, 3, 64), first)
    draws = [rows.draw(0, p, 64) for p in range(20)] + [rows.draw(e, 3, 64) for e in range(1, 20)]
    assert any((d != first).any() for d in draws)
    other = PronText(config(text_file, "data.seed=1"), row_multiple=1, text_lens=[64])
    assert any((other.draw(0, p, 64) != rows.draw(0, p, 64)).any() for p in range(20))


def test_a_missing_or_useless_file_is_one_clear_error(tmp_path):
    missing = tmp_path / "none.txt"
    with pytest.raises(ValueError, match=r"data.pron_text .*none.txt: .*No such file"):
        PronText(config(missing), row_multiple=1, text_lens=[64])
    useless = tmp_path / "useless.txt"
    useless.write_text("X\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"useless.txt: no usable line"):
        PronText(config(useless), row_multiple=1, text_lens=[64])


def test_a_line_that_is_a_validation_transcript_is_left_out(text_file):
    """Validation then measures the head on text it never trained on."""
    cfg = config(text_file)
    held_out = {
        tuple(encode_text("Dogs bark at night.", cfg.data.text_normalizer, "bytes").tolist())
    }
    rows = PronText(cfg, row_multiple=1, text_lens=[64], held_out=held_out)
    assert rows.counts["held_out"] == 1 and rows.counts["kept"] == 2
    assert not any(tuple(t.tolist()) in held_out for t in rows.tokens)


def test_text_rows_need_the_phoneme_head(text_file):
    with pytest.raises(ConfigError, match="data.pron_text=.* needs model.pron_head=true"):
        apply_overrides(load_config(CONFIGS / "tiny.yaml"), [f"data.pron_text={text_file}"])
