"""eSpeak NG, in-process and as a program: one driver for the demo, the benches and corpora."""

import shutil

import numpy as np
import pytest

from speechcorpus.espeak import Espeak, EspeakProgram

TEXT = "The tired farmer carried the heavy basket."


def test_espeak_speaks():
    pytest.importorskip("espeakng_loader")
    engine = Espeak()
    short, long = engine.synth("Hi."), engine.synth(TEXT)
    assert engine.sample_rate == 22050
    assert 0.2 < len(short) / engine.sample_rate < len(long) / engine.sample_rate < 6
    rms = np.sqrt(np.mean(long**2))
    assert 0.01 < rms < 0.9 and np.abs(long).max() <= 1.0
    # eSpeak NG adds random noise to unvoiced sounds, so a repeat is alike, not identical.
    again = engine.synth(TEXT)
    assert abs(len(again) - len(long)) < 0.05 * len(long)


def test_the_rate_sets_the_length():
    pytest.importorskip("espeakng_loader")
    slow, fast = Espeak(rate=120).synth(TEXT), Espeak(rate=220).synth(TEXT)
    assert 1.5 < len(slow) / len(fast) < 2.2


def test_unknown_voice_is_refused():
    pytest.importorskip("espeakng_loader")
    with pytest.raises(RuntimeError, match="no voice 'xx-nowhere'"):
        Espeak("xx-nowhere")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng program")
def test_program_speaks_like_the_library():
    pytest.importorskip("espeakng_loader")
    program, library = EspeakProgram().synth(TEXT), Espeak().synth(TEXT)
    assert abs(len(program) - len(library)) < 0.1 * len(library)
