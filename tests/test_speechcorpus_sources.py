"""Offline text sources: GCIDE's quotations and plain text files."""

import gzip

import pytest

from speechcorpus import sources
from speechcorpus.sentences import clean

GCIDE_ENTRY = """Affect \\Af*fect"\\, v. t. [imp. & p. p. {Affected}.]
   1. To act upon; to produce an effect or change upon.
      [1913 Webster]

            As might affect the earth with cold heat. --Milton.
      [1913 Webster]

            The climate affected their health and spirits.
                                                  --Macaulay.
      [1913 Webster]

   2. To influence or move, as the feelings or passions.
      [1913 Webster]

            Men whom they thought best affected to religion and
            their country's liberty.              --Milton.
      [1913 Webster]
"""


def test_gcide_quotations_lose_their_authors(tmp_path):
    path = tmp_path / "gcide.dict.dz"
    with gzip.open(path, "wt") as f:
        f.write(GCIDE_ENTRY)
    assert list(sources.gcide_quotations(path)) == [
        "As might affect the earth with cold heat.",
        "The climate affected their health and spirits.",
        "Men whom they thought best affected to religion and their country's liberty.",
    ]


def test_a_text_file_is_a_sentence_a_line(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("One two three four.\nFive six seven eight.\n", encoding="utf-8")
    assert list(sources.read_source(str(path))) == ["One two three four.", "Five six seven eight."]


def test_missing_sources_name_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such text file"):
        sources.read_source(str(tmp_path / "none.txt"))
    monkeypatch.setattr(sources, "GCIDE", tmp_path / "gcide.dict.dz")
    with pytest.raises(FileNotFoundError, match="apt-get install dict-gcide"):
        sources.read_source("gcide")


@pytest.mark.skipif(not sources.GCIDE.exists(), reason="dict-gcide is not installed")
def test_the_installed_gcide_gives_tens_of_thousands_of_sentences():
    assert len(clean(sources.read_source("gcide"))) > 25_000
