"""Codes -> waveform with exactly the codec a store (or a codes sidecar) records.

Codes come from a store (``--store --id``), from a ``.npy`` written by `format.save_codes`
(its ``.json`` sidecar holds the store meta, ``store_dir`` included, so even untrained
weights are found), or from a folder of them (the sampler's output).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from codec_bridge.codec import Codec, codec_from_meta
from codec_bridge.errors import BridgeError
from codec_bridge.format import CodeStore, StoreError, load_codes


@lru_cache(maxsize=4)
def _codec(meta_json: str, store_dir: str | None, weights: str | None, device: str) -> Codec:
    """One codec per distinct (meta, weights, device): a folder of codes loads it once."""
    return codec_from_meta(
        json.loads(meta_json),
        store_dir=Path(store_dir) if store_dir else None,
        weights=Path(weights) if weights else None,
        device=device,
    )


def read_meta(meta: dict | str | Path | None, store: Path | None, sidecar: dict | None) -> dict:
    """Codec metadata: ``meta`` (a dict or JSON path), else a codes sidecar, else the store's."""
    if isinstance(meta, dict):
        return meta
    if meta is not None:
        try:
            return json.loads(Path(meta).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise BridgeError(f"{meta}: cannot read codec metadata ({e})") from None
    if sidecar is not None:
        return sidecar
    if store is not None:
        try:
            return CodeStore.open(store).meta
        except StoreError as e:
            raise BridgeError(str(e)) from None
    raise BridgeError("no codec metadata: pass --meta META.json or --store STORE_DIR")


def codec_for(
    info: dict[str, Any],
    *,
    store: str | Path | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
) -> Codec:
    """The codec, at its bandwidth, that the metadata ``info`` (see `read_meta`) records."""
    store_dir = Path(store) if store is not None else None
    key = json.dumps(
        {k: info.get(k) for k in ("codec", "bandwidth", "weights", "store_dir")}, sort_keys=True
    )
    return _codec(
        key, str(store_dir) if store_dir else None, str(weights) if weights else None, device
    )


def decode(
    codes: np.ndarray | str | Path,
    meta: dict[str, Any] | str | Path | None = None,
    *,
    store: str | Path | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
) -> tuple[np.ndarray, int]:
    """Codes ``[K, T]`` (an array, or a ``.npy`` path) -> (float32 ``[channels, T * hop]``,
    sample rate).

    The codec is the one ``meta`` records (a dict or JSON path; by default the ``.npy``'s
    sidecar, else the store's meta). ``store`` also locates untrained weights; ``weights``
    names the weights file explicitly (it must match the recorded sha256)."""
    what = "codes"
    sidecar = None
    if not isinstance(codes, np.ndarray):
        what = str(codes)
        try:
            codes, sidecar = load_codes(codes)
        except StoreError as e:
            raise BridgeError(str(e)) from None
    info = read_meta(meta, Path(store) if store is not None else None, sidecar)
    codec = codec_for(info, store=store, weights=weights, device=device)
    codec.check_codes(np.asarray(codes), what)
    return codec.decode(codes).numpy(), codec.sample_rate


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM WAV; samples beyond full scale are clipped, not wrapped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wav, -1.0, 1.0).T, sample_rate, subtype="PCM_16")
    return path


def decode_to_wav(
    out: str | Path,
    *,
    store: str | Path | None = None,
    utt_id: str | None = None,
    codes: str | Path | None = None,
    meta: str | Path | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
) -> Path:
    """One utterance (``store`` + ``utt_id``, or a ``codes`` ``.npy``) -> ``out`` WAV."""
    if utt_id is not None:
        if store is None:
            raise BridgeError("--id needs --store STORE_DIR")
        try:
            arr = CodeStore.open(store).get(utt_id).codes
        except StoreError as e:
            raise BridgeError(str(e)) from None
        except KeyError:
            raise BridgeError(f"{store}: no utterance with id {utt_id!r}") from None
        wav, sr = decode(arr, meta, store=store, weights=weights, device=device)
    elif codes is not None:
        wav, sr = decode(codes, meta, store=store, weights=weights, device=device)
    else:
        raise BridgeError("nothing to decode: give CODES.npy or --store with --id")
    return write_wav(out, wav, sr)


def decode_dir(
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    store: str | Path | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
) -> list[Path]:
    """Every ``*.npy`` in ``in_dir`` (with its sidecar) -> ``out_dir/{name}.wav``."""
    files = sorted(Path(in_dir).glob("*.npy"))
    if not files:
        raise BridgeError(f"{in_dir}: no .npy codes files found")
    return [
        write_wav(
            Path(out_dir) / f"{p.stem}.wav", *decode(p, store=store, weights=weights, device=device)
        )
        for p in files
    ]
