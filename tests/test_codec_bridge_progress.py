"""codec_bridge.progress: one line per interval in a log file, redraws in a terminal."""

import io
from importlib.metadata import entry_points

from codec_bridge.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_whole_lines_not_redraws():
    log = io.StringIO()
    with progress_bar(log, total=1000, unit="step", desc="train") as bar:
        for _ in range(1000):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2, lines  # the start and the end: 1000 fast updates are one interval
    assert lines[0].startswith("train:   0%") and "1000/1000" in lines[-1]


def test_explicit_refreshes_wait_for_the_interval_too():
    log = io.StringIO()
    bar = progress_bar(log, total=100)
    for i in range(100):
        bar.n = i + 1
        bar.set_postfix_str(f"{i}x real time")  # refreshes, as extraction's bar does
        bar.refresh()
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "100/100" in lines[-1] and "99x real time" in lines[-1], lines


def test_a_log_file_gets_a_line_per_interval(monkeypatch):
    monkeypatch.setattr("codec_bridge.progress.LOG_EVERY_S", 0.0)
    log = io.StringIO()
    with progress_bar(log, total=5, unit="step", mininterval=0) as bar:
        for _ in range(5):
            bar.update(1)
    assert [line.split("|")[-1].split()[0] for line in log.getvalue().splitlines()][-1] == "5/5"
    assert len(log.getvalue().splitlines()) >= 5


def test_a_terminal_gets_the_redrawn_bar():
    term = _Terminal()
    with progress_bar(term, total=10) as bar:
        bar.update(10)
    assert "\r" in term.getvalue()


def test_console_scripts_are_installed():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["jtts-train"] == "jtts.train:main"
    assert scripts["jtts-sample"] == "jtts.sample:main"
    assert scripts["codec-bridge"] == "codec_bridge.cli:main"
    assert callable(entry_points(group="console_scripts")["jtts-sample"].load())
