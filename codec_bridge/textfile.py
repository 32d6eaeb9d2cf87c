"""Reading the text files users hand us (transcripts, manifests, sentence lists) as UTF-8.

A file in another encoding must fail with its name and line, not with a `UnicodeDecodeError`
that names neither; a UTF-8 byte-order mark (what Windows tools write) is accepted. Torch-
and jax-free, so jtts reads its --text-file with it too.
"""

from __future__ import annotations

import os
from pathlib import Path


class EncodingError(ValueError):
    """A text file is not UTF-8; the message names the file, line and byte, and the fix."""


def read_text(path: str | os.PathLike) -> str:
    """The file's text, decoded as UTF-8 without a leading byte-order mark."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise EncodingError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x}); re-encode the file as "
            "UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
