"""codec_bridge: the PyTorch side of jtts. Speech corpora -> EnCodec RVQ code stores, and codes
-> audio. ``python -m codec_bridge --help`` lists the commands.

This package holds extraction and decoding, and what the subpackages share (corpus readers,
audio loading, the codec and its weights file, the progress bar); `codec_bridge.training`
trains codecs and `codec_bridge.judge` judges speech (ASR, speaker similarity).

Importing the package (or `codec_bridge.format`) does not import torch, so jtts stays
torch-free: `extract` and `decode` load their modules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codec_bridge.decoding import decode
    from codec_bridge.extraction import extract

__all__ = ["decode", "extract"]


def __getattr__(name: str):
    if name == "extract":
        from codec_bridge.extraction import extract

        return extract
    if name == "decode":
        from codec_bridge.decoding import decode

        return decode
    raise AttributeError(f"module 'codec_bridge' has no attribute {name!r}")
