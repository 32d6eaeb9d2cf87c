"""Progress bars that suit a terminal and a log file alike (torch- and jax-free: jtts uses it).

In a terminal tqdm redraws one line in place. Written to a file (`make demo > demo.log`) each
redraw would be appended after a carriage return: thousands of states on one line. There the
same bar prints a whole line at most every `LOG_EVERY_S` seconds, and one when it closes.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

LOG_EVERY_S = 30.0


class _Lines:
    """A stream that turns tqdm's in-place redraws into whole lines."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, s: str) -> None:
        s = s.replace("\r", "").rstrip()
        if s:
            self.stream.write(s + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(tqdm):
    """Shows itself at most every `LOG_EVERY_S` seconds, whatever asks (an update, a postfix,
    an explicit refresh), and always when it closes."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        now = time.monotonic()
        if not self.disable and now - getattr(self, "_shown", -LOG_EVERY_S) < LOG_EVERY_S:
            return True
        self._shown = now
        return super().display(msg, pos)


def progress_bar(stream: TextIO | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on `stream` (stderr): redrawn in a terminal, a line per interval elsewhere."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(file=stream, dynamic_ncols=True, **kwargs)
    return _LogBar(file=_Lines(stream), ncols=80, ascii=True, **kwargs)
