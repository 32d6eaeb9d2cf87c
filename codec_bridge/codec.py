"""The EnCodec model behind a store: which weights, encoding (batched where exact), decoding.

Weights come from one of three places and the store meta records which (``weights``):
``pretrained`` (the published checkpoint, through the encodec package and torch.hub's cache),
a state-dict ``FILE``, or ``untrained`` (seeded random weights, saved into the store so that
decoding uses the very same codec). Never silently anything else.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from encodec import EncodecModel

from codec_bridge.batching import BatchEncoder
from codec_bridge.codec_config import (
    TRAINED_PREFIX,
    build_model,
    complete_state,
    config_of,
    read_weights,
)
from codec_bridge.errors import BridgeError
from codec_bridge.format import file_sha256, size_text
from codec_bridge.untrained import randomize

UNTRAINED_FILE = "codec_weights.pt"
NOMINAL_RMS = 0.05  # loudness for 48 kHz segments whose normalization scale was not stored
_ROOT_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"


@dataclass(frozen=True)
class _Spec:
    factory: str
    checkpoint: str
    name: str
    bandwidths: tuple[float, ...]  # kbps, as the encodec factory sets target_bandwidths


MODELS = {
    "24khz": _Spec(
        "encodec_model_24khz", "encodec_24khz-d7cc33bc.th", "encodec_24khz", (1.5, 3, 6, 12, 24)
    ),
    "48khz": _Spec(
        "encodec_model_48khz", "encodec_48khz-7e698e3e.th", "encodec_48khz", (3, 6, 12, 24)
    ),
}
UNTRAINED_WARNING = """\
##########################################################################################
# WARNING: UNTRAINED EnCodec WEIGHTS (seeded random init, {what}).
# Codes are NOT speech codes and decoded audio is noise-like. Use this ONLY to test the
# pipeline. For real data put {checkpoint} in {cache}
# (from {url}) or pass --weights FILE.
##########################################################################################
"""


def resolve_device(device: str) -> torch.device:
    """``auto`` is cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BridgeError("--device cuda: no CUDA device is available")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise BridgeError(f"--device {device!r}: choose cpu, cuda or auto")
    return torch.device(device)


def _spec(model: str) -> _Spec:
    if model not in MODELS:
        raise BridgeError(f"--model {model!r}: choose from {', '.join(MODELS)}")
    return MODELS[model]


def check_settings(model: str, kbps: float) -> None:
    """Reject an unknown model or bandwidth before anything is loaded or written."""
    _check_bandwidth(_spec(model), kbps)


def _check_bandwidth(spec: _Spec, kbps: float) -> None:
    if float(kbps) not in spec.bandwidths:
        supported = ", ".join(f"{b:g}" for b in spec.bandwidths)
        raise BridgeError(f"--bandwidth {kbps:g}: the {spec.name} model supports {supported}")


def _architecture(spec: _Spec, pretrained: bool = False) -> EncodecModel:
    with warnings.catch_warnings():  # encodec uses the deprecated torch weight_norm
        warnings.simplefilter("ignore", FutureWarning)
        return getattr(EncodecModel, spec.factory)(pretrained=pretrained)


def hub_file(spec: _Spec) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / spec.checkpoint


def _how_to_get(spec: _Spec) -> str:
    return (
        f"put {spec.checkpoint} in {hub_file(spec).parent} (from {_ROOT_URL}{spec.checkpoint})"
        " or pass --weights FILE"
    )


def _warn_untrained(spec: _Spec, what: str) -> None:
    sys.stderr.write(
        UNTRAINED_WARNING.format(
            what=what,
            checkpoint=spec.checkpoint,
            cache=hub_file(spec).parent,
            url=_ROOT_URL + spec.checkpoint,
        )
    )


def _untrained(spec: _Spec, seed: int) -> EncodecModel:
    torch.manual_seed(seed)
    return randomize(_architecture(spec), seed)


def _load_state(spec: _Spec, path: Path) -> EncodecModel:
    state = read_weights(path)
    trained = config_of(state, path)  # a codec made by `codec_bridge train` says its shape
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = _architecture(spec) if trained is None else build_model(trained)
    if trained is not None and isinstance(state, dict):
        state = complete_state(state)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0][:200]
        raise BridgeError(f"{path}: not an EnCodec {spec.name} state dict ({first})") from None
    return model.eval()


def _link_new(path: Path, model: EncodecModel) -> None:
    """Save weights to ``path`` unless another writer got there first (then keep theirs).

    A failed save (full disk, read-only store) removes its temporary file, which is as large
    as the weights, and says how much space they need."""
    state = model.state_dict()
    need = sum(t.nbytes for t in state.values())
    free = shutil.disk_usage(path.parent).free
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        torch.save(state, tmp)
        os.link(tmp, path)
    except FileExistsError:
        pass
    except (OSError, RuntimeError) as e:  # torch reports a failed write as a RuntimeError
        if free < need or getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            raise BridgeError(
                f"{path}: no space left on device for the untrained codec weights "
                f"({size_text(free)} free, needs {size_text(need)})"
            ) from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise BridgeError(f"{path}: cannot save the untrained codec weights ({first})") from None
    finally:
        tmp.unlink(missing_ok=True)


class Codec:
    """An EnCodec model at one bandwidth, plus the ``weights`` record that recreates it."""

    def __init__(self, model: EncodecModel, spec: _Spec, weights: dict[str, Any], device):
        self.model = model.to(device).eval()
        if model.name.startswith(TRAINED_PREFIX):  # its own name and bandwidths
            spec = _Spec("", "", model.name, tuple(float(b) for b in model.target_bandwidths))
        self.spec = spec
        self.weights = weights
        self.device = device
        self.hop = int(np.prod(model.encoder.ratios))
        rows = None if self.device.type == "cuda" else 2  # small passes keep a CPU's caches warm
        self._batcher = (
            BatchEncoder(model, rows_per_pass=rows) if BatchEncoder.supports(model) else None
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def channels(self) -> int:
        return self.model.channels

    @property
    def codebook_size(self) -> int:
        return self.model.quantizer.bins

    @property
    def n_codebooks(self) -> int:
        return self.model.quantizer.get_num_quantizers_for_bandwidth(
            self.model.frame_rate, self.model.bandwidth
        )

    @property
    def bandwidth(self) -> float:
        return float(self.model.bandwidth)

    def set_bandwidth(self, kbps: float) -> None:
        _check_bandwidth(self.spec, kbps)
        self.model.set_target_bandwidth(float(kbps))

    def meta(self, **extra: Any) -> dict[str, Any]:
        """Arguments for `format.make_meta` describing this codec."""
        return dict(
            codec=self.name,
            sample_rate=self.sample_rate,
            frame_rate=self.sample_rate / self.hop,
            n_codebooks=self.n_codebooks,
            codebook_size=self.codebook_size,
            bandwidth=self.bandwidth,
            weights=self.weights,
            **extra,
        )

    # -- encoding ---------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_one(self, wav: torch.Tensor) -> np.ndarray:
        """``model.encode`` on one utterance ``[C, samples]`` -> codes ``[K, T]``."""
        frames = self.model.encode(wav[None].to(self.device))
        return torch.cat([c for c, _ in frames], dim=-1)[0].cpu().numpy()

    def encode(self, wavs: list[torch.Tensor]) -> list[np.ndarray]:
        """Codes ``[K, T]`` per utterance ``[C, samples]``, equal to `encode_one` on each.

        The causal 24 kHz model encodes them together (`BatchEncoder`). The 48 kHz model
        normalizes and overlaps 1 s segments per utterance, so padding would change its codes:
        it (and any utterance too short to batch, under ~0.08 s) is encoded alone."""
        out: list[np.ndarray | None] = [None] * len(wavs)
        batch = []
        for i, w in enumerate(wavs):
            if self._batcher is not None and self._batcher.plan(w.shape[-1])[1]:
                batch.append(i)
            else:
                out[i] = self.encode_one(w)
        if batch:
            codes = self._batcher.encode([wavs[i] for i in batch], self.device)
            for i, c in zip(batch, codes, strict=True):
                out[i] = c
        return out  # type: ignore[return-value]

    # -- decoding ---------------------------------------------------------------------------

    def check_codes(self, codes: np.ndarray, what: str) -> None:
        if codes.ndim != 2 or codes.shape[1] < 1:
            raise BridgeError(
                f"{what}: codes have shape {codes.shape}, expected [codebooks, frames]"
            )
        if codes.shape[0] != self.n_codebooks:
            raise BridgeError(
                f"{what}: {codes.shape[0]} codebooks, but the codec at {self.bandwidth:g} kbps"
                f" uses {self.n_codebooks}"
            )
        if not np.issubdtype(codes.dtype, np.integer):
            raise BridgeError(f"{what}: codes have dtype {codes.dtype}, expected integers")
        low, high = codes.min(), codes.max()
        if low < 0 or high >= self.codebook_size:
            raise BridgeError(
                f"{what}: codes out of range [{low}, {high}], expected [0, {self.codebook_size})"
            )

    @torch.inference_mode()
    def decode(self, codes: np.ndarray) -> torch.Tensor:
        """Codes ``[K, T]`` -> waveform ``[channels, T * hop]`` (float32, on the cpu).

        48 kHz codes are split into the model's 1 s segments. Loudness scales are not stored,
        so a model that normalizes (48 kHz, trained codecs) renders at `NOMINAL_RMS`."""
        c = torch.from_numpy(np.asarray(codes, dtype=np.int64))[None].to(self.device)
        scale = torch.full((1, 1), NOMINAL_RMS, device=self.device)
        if self.model.segment is None:
            frames = [(c, scale if self.model.normalize else None)]
        else:
            per = math.ceil(self.model.segment_length / self.hop)
            frames = [(c[..., i : i + per], scale) for i in range(0, c.shape[-1], per)]
        return self.model.decode(frames)[0].float().cpu()


def load_codec(
    model: str = "24khz",
    weights: str | Path = "pretrained",
    *,
    seed: int = 0,
    device: str = "auto",
    store: Path | None = None,
) -> Codec:
    """The codec for ``--model``/``--weights``. With ``untrained`` and a ``store``, the store's
    saved weights are reused (or saved there first), so every writer of a store and every
    later decode uses the same codec."""
    spec = _spec(model)
    dev = resolve_device(device)
    if weights == "pretrained":
        try:
            net = _architecture(spec, pretrained=True)
        except Exception as e:  # no network, bad cache file, ...: say how to fix it
            why = " ".join(str(e).split())[:160]
            raise BridgeError(
                f"pretrained EnCodec {model} weights unavailable ({why}): {_how_to_get(spec)}"
            ) from None
        record = {
            "kind": "pretrained",
            "checkpoint": spec.checkpoint,
            "sha256": file_sha256(hub_file(spec)),
        }
        return Codec(net, spec, record, dev)
    if weights == "untrained":
        record: dict[str, Any] = {"kind": "untrained", "seed": int(seed), "file": UNTRAINED_FILE}
        _warn_untrained(spec, f"seed {seed}")
        if store is None:
            return Codec(_untrained(spec, seed), spec, record, dev)
        path = Path(store) / UNTRAINED_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _link_new(path, _untrained(spec, seed))
        return Codec(_load_state(spec, path), spec, {**record, "sha256": file_sha256(path)}, dev)
    path = Path(weights).resolve()
    if not path.is_file():
        raise BridgeError(f"--weights {weights}: no such file (or use pretrained / untrained)")
    record = {"kind": "file", "path": str(path), "sha256": file_sha256(path)}
    return Codec(_load_state(spec, path), spec, record, dev)


def codec_from_meta(
    meta: dict[str, Any],
    *,
    store_dir: Path | None = None,
    weights: Path | None = None,
    device: str = "auto",
) -> Codec:
    """The codec a store (or a codes sidecar) records, checked against its sha256.

    ``weights`` overrides where the file is looked for; an untrained ``file`` is resolved
    against ``store_dir`` (or the meta's own ``store_dir``)."""
    name = str(meta.get("codec", ""))
    model = next((k for k, s in MODELS.items() if s.name == name), None)
    if model is None and not name.startswith(TRAINED_PREFIX):  # trained: shape in the file
        raise BridgeError(
            f"codec {name!r} in the metadata is not one of {[s.name for s in MODELS.values()]}"
        )
    spec = MODELS[model or "24khz"]
    record = dict(meta.get("weights") or {})
    kind = record.get("kind")
    if weights is None and kind == "pretrained":
        codec = load_codec(model, "pretrained", device=device)
        path = hub_file(spec)
    else:
        if weights is not None:
            path = Path(weights)
        elif kind == "file":
            path = Path(record.get("path", ""))
        elif kind == "untrained":
            root = store_dir or (Path(meta["store_dir"]) if meta.get("store_dir") else None)
            path = Path(record.get("file", UNTRAINED_FILE))
            if not path.is_absolute():
                if root is None:
                    raise BridgeError(
                        f"untrained weights {path} are relative to the store, but no store is known"
                        " (pass --store or --weights FILE, or add store_dir to the sidecar)"
                    )
                path = root / path
        else:
            raise BridgeError(
                f"metadata weights kind {kind!r} is not pretrained, file or untrained"
            )
        if not path.is_file():
            raise BridgeError(f"{path}: codec weights file not found (pass --weights FILE)")
        codec = Codec(_load_state(spec, path), spec, record, resolve_device(device))
    want = record.get("sha256")
    if want and file_sha256(path) != want:
        raise BridgeError(
            f"{path}: sha256 differs from the weights the codes were made with ({want[:12]}...)"
        )
    if kind == "untrained":
        _warn_untrained(spec, f"seed {record.get('seed')}, decoding")
    if not isinstance(meta.get("bandwidth"), (int, float)):
        raise BridgeError(f"metadata has no numeric bandwidth (got {meta.get('bandwidth')!r})")
    codec.set_bandwidth(float(meta["bandwidth"]))
    return codec
