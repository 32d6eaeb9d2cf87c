"""The package stays torch-free on import; the API loads on first use."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_pull_in_torch():
    code = (
        "import sys, codec_bridge, codec_bridge.format, codec_bridge.readers, codec_bridge.info, "
        "codec_bridge.cli; bad = {'torch', 'jax', 'encodec'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_api_is_the_functions():
    import codec_bridge
    from codec_bridge.decoding import decode
    from codec_bridge.extraction import extract

    assert codec_bridge.extract is extract and codec_bridge.decode is decode
    assert callable(codec_bridge.extract) and sorted(codec_bridge.__all__) == ["decode", "extract"]


def test_help_runs_without_torch():
    out = subprocess.run(
        [sys.executable, "-m", "codec_bridge", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and all(
        c in out.stdout for c in ("extract", "info", "verify", "decode")
    )
