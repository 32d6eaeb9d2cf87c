"""One audio file -> codes with exactly the codec a store (or a codes sidecar) records: the
sampler's voice prompt, which must be in the codes the model was trained on.

The file is read like a corpus file (`codec_bridge.audio.load`): other sample rates are
resampled and stereo is mixed down to the codec's channels (`encodec.utils.convert_audio`);
a missing, unreadable, silent, too short or too long file is a `BridgeError` naming it. The
cheap checks (exists, readable header, duration) come before the codec is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from codec_bridge.audio import Skip, load, probe_seconds
from codec_bridge.decoding import codec_for, read_meta
from codec_bridge.errors import BridgeError


def encode_file(
    path: str | Path,
    meta: dict[str, Any] | str | Path | None = None,
    *,
    store: str | Path | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
    min_seconds: float = 0.0,
    max_seconds: float = 60.0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Codes ``[K, T]`` of the audio at ``path``, encoded by the codec ``meta`` (a dict or JSON
    path, else the ``store``'s meta) records, at its bandwidth; and that meta, with the
    ``store_dir`` that locates untrained weights, for the codes' sidecar."""
    path = Path(path)
    if not path.is_file():
        raise BridgeError(f"{path}: no such file")
    try:
        seconds = probe_seconds(path)
        if seconds < min_seconds:
            raise Skip(f"too short ({seconds:.2f} s < --min-seconds {min_seconds:g})")
        if seconds > max_seconds:
            raise Skip(f"too long ({seconds:.1f} s > --max-seconds {max_seconds:g})")
        info = read_meta(meta, Path(store) if store is not None else None, None)
        if store is not None:
            info = {**info, "store_dir": str(Path(store).resolve())}
        codec = codec_for(info, store=store, weights=weights, device=device)
        wav = load(
            path, codec.sample_rate, codec.channels, max_seconds=max_seconds, min_samples=codec.hop
        )
    except Skip as e:
        raise BridgeError(f"{path}: {e}") from None
    return codec.encode_one(wav), info
