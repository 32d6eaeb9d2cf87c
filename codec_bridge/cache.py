"""The project's cache folder, shared by jtts (tokenizer, compiled programs) and the bridge
(assembled Whisper weights); torch- and jax-free, like `codec_bridge.format`."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$JTTS_CACHE``, else ``$XDG_CACHE_HOME/jtts``, else ``~/.cache/jtts``."""
    return Path(
        os.environ.get("JTTS_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "jtts")
    )
