"""Each installed engine speaks a short sentence; a missing one is a one-line error."""

import shutil

import numpy as np
import pytest

from speechcorpus import voices
from speechcorpus.voices import VoiceUnavailable, load_voice

# voice -> the sample rate its engine documents
VOICES = {
    "espeak:en-us": 22050,
    "espeak:en-us+f3@140": 22050,
    "hibari:heart": 24000,
    "flite:slt": 16000,
    "flite:kal": 8000,
    "piper:joe": 22050,
}


def _voice(spec):
    try:
        return load_voice(spec)
    except VoiceUnavailable as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("spec", VOICES)
def test_voice_speaks_a_short_sentence(spec):
    voice = _voice(spec)
    short, sr = voice.speak("Good morning.")
    long, sr_long = voice.speak("Every morning the baker rose before the sun to light his ovens.")
    assert sr == sr_long == VOICES[spec] and voice.spec == spec
    assert short.dtype == long.dtype == np.float32 and short.ndim == 1
    assert 0.3 < len(short) / sr < len(long) / sr < 8
    assert np.abs(long).max() <= 1.0 and 0.01 < np.sqrt(np.mean(long**2)) < 0.9


def test_hibari_is_seeded():
    voice = _voice("hibari:heart")
    a, _ = voice.speak("The old clock struck midnight.")
    b, _ = voice.speak("The old clock struck midnight.")
    np.testing.assert_array_equal(a, b)


def test_hibari_never_downloads_a_voice(tmp_path, monkeypatch):
    hibari_voices = pytest.importorskip("hibari.voices")
    monkeypatch.setenv("HIBARI_HOME", str(tmp_path))

    def no_download(*args):
        raise AssertionError("tried to download")

    monkeypatch.setattr(hibari_voices, "download", no_download)
    with pytest.raises(VoiceUnavailable, match="'emma' is not on this machine"):
        load_voice("hibari:emma")


@pytest.mark.parametrize(
    "spec, message, needs",
    [
        ("nope:x", "not engine:name", None),
        ("hibari", "not engine:name", None),
        ("espeak:en-us@fast", "must be an integer", None),
        ("espeak:xx-nowhere", "no voice 'xx-nowhere'", "espeak"),
        ("piper:nobody", "unknown", "piper"),
        ("flite:nobody", "no voice 'nobody'", "flite"),
    ],
)
def test_bad_voice_names_are_refused_in_one_line(spec, message, needs):
    if needs == "piper":
        pytest.importorskip("piper")
    if needs == "espeak":
        pytest.importorskip("espeakng_loader")
    if needs == "flite" and shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    with pytest.raises(VoiceUnavailable, match=message) as err:
        load_voice(spec)
    assert "\n" not in str(err.value)


def test_a_missing_engine_names_its_package(monkeypatch):
    monkeypatch.setattr(voices.shutil, "which", lambda name: None)
    with pytest.raises(VoiceUnavailable, match="apt-get install flite"):
        load_voice("flite:slt")


def test_engines_here_lists_every_engine():
    status = voices.engines_here()
    assert list(status) == list(voices.ENGINES)
    assert all(status.values())
