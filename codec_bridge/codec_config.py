"""The architecture of a codec trained by the bridge, and its self-describing weights file.

A trained codec is the `encodec` package's own `EncodecModel` (SEANet encoder and decoder,
residual vector quantizer), only narrower or at another sample rate than the published ones.
Its weights file is ``{"encodec_config": {...}, "state_dict": {...}}``: the state dict is
what ``EncodecModel.load_state_dict`` takes, and the config says how to build the model it
fits, so ``--weights FILE`` needs no other flag.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from encodec import EncodecModel
from encodec.modules import SEANetDecoder, SEANetEncoder
from encodec.quantization import ResidualVectorQuantizer

from codec_bridge.errors import BridgeError

CONFIG_KEY = "encodec_config"
TRAINED_PREFIX = "encodec_trained"  # model names of trained codecs; the file says the rest


@dataclass(frozen=True)
class CodecConfig:
    """Constructor arguments of the encodec modules; defaults are the bridge's small codec."""

    sample_rate: int = 24000
    channels: int = 1
    n_filters: int = 16
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    dimension: int = 128
    lstm: int = 1
    causal: bool = True
    norm: str = "weight_norm"
    bins: int = 1024
    bandwidths: tuple[float, ...] = (1.5, 3.0, 6.0)  # kbps; the last sets the codebook count
    normalize: bool = True  # per-utterance RMS normalization (without it training collapses)

    def __post_init__(self):
        if self.bins < 2 or self.bins & (self.bins - 1):
            raise BridgeError(f"codec bins {self.bins}: must be a power of two")
        for bw in self.bandwidths:
            n = 1000 * bw / (self.frame_rate * math.log2(self.bins))
            if n < 1 or abs(n - round(n)) > 1e-9:
                raise BridgeError(
                    f"codec bandwidth {bw:g} kbps is not a whole number of codebooks at"
                    f" {self.frame_rate} frames/s and {self.bins} codes"
                )

    @property
    def hop(self) -> int:
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> int:
        return math.ceil(self.sample_rate / self.hop)

    @property
    def n_q(self) -> int:
        return round(1000 * self.bandwidths[-1] / (self.frame_rate * math.log2(self.bins)))

    @property
    def name(self) -> str:
        return f"{TRAINED_PREFIX}_{self.sample_rate // 1000}khz_f{self.n_filters}"

    @classmethod
    def from_dict(cls, d: dict[str, Any], what: str = "codec config") -> CodecConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BridgeError(f"{what}: unknown keys {unknown} (valid: {sorted(known)})")
        d = dict(d)
        for key in ("ratios", "bandwidths"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratios"], d["bandwidths"] = list(self.ratios), list(self.bandwidths)
        return d


def build_model(cfg: CodecConfig) -> EncodecModel:
    """A fresh `EncodecModel` for ``cfg`` at its largest bandwidth.

    The package's k-means init and dead-code expiry are switched off
    (`training.quantizer_init` does both properly, from outside), so its codebooks start
    uniform and marked initialized."""
    common = dict(
        channels=cfg.channels,
        dimension=cfg.dimension,
        n_filters=cfg.n_filters,
        n_residual_layers=cfg.n_residual_layers,
        ratios=list(cfg.ratios),
        norm=cfg.norm,
        causal=cfg.causal,
        lstm=cfg.lstm,
    )
    with warnings.catch_warnings():  # encodec uses the deprecated torch weight_norm
        warnings.simplefilter("ignore", FutureWarning)
        encoder, decoder = SEANetEncoder(**common), SEANetDecoder(**common)
    quantizer = ResidualVectorQuantizer(
        dimension=cfg.dimension,
        n_q=cfg.n_q,
        bins=cfg.bins,
        kmeans_init=False,
        threshold_ema_dead_code=0,
    )
    model = EncodecModel(
        encoder,
        decoder,
        quantizer,
        list(cfg.bandwidths),
        cfg.sample_rate,
        cfg.channels,
        normalize=cfg.normalize,
        name=cfg.name,
    )
    model.set_target_bandwidth(cfg.bandwidths[-1])
    return model


_EMA_SUM = "_codebook.embed_avg"  # training-only: the quantizer's EMA sum, embed x cluster_size


def save_weights(path: Path, model: EncodecModel, cfg: CodecConfig, release: bool = False) -> None:
    """Write the weights file (state dict plus config) atomically.

    A release file (what a repository ships) keeps what inference needs at half the size:
    float16 tensors and no EMA sums; `complete_state` restores both on load."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if release:
        state = {
            k: v.half() if v.is_floating_point() else v
            for k, v in state.items()
            if not k.endswith(_EMA_SUM)
        }
    torch.save({CONFIG_KEY: cfg.to_dict(), "state_dict": state}, tmp)
    tmp.replace(path)


def complete_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A release state dict made whole: float32 tensors, EMA sums from codebook x counts."""
    out = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    for key in [k for k in out if k.endswith("_codebook.embed")]:
        base = key[: -len("embed")]
        if base + "embed_avg" not in out and base + "cluster_size" in out:
            out[base + "embed_avg"] = out[key] * out[base + "cluster_size"][:, None]
    return out


def read_weights(path: Path) -> Any:
    """`torch.load` of a weights file (tensors only), any failure a one-line error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise BridgeError(
            f"{path}: cannot load weights ({' '.join(str(e).split())[:200]})"
        ) from None


def config_of(state: Any, path: Path) -> CodecConfig | None:
    """The config a loaded weights file carries, or None for a bare state dict."""
    if isinstance(state, dict) and CONFIG_KEY in state:
        if not isinstance(state[CONFIG_KEY], dict):
            raise BridgeError(f"{path}: {CONFIG_KEY} is not a mapping")
        return CodecConfig.from_dict(state[CONFIG_KEY], f"{path}: {CONFIG_KEY}")
    return None


def export_release(src: Path, dst: Path) -> int:
    """Write `src` (a `codec_bridge train` weights file) as a release file at `dst`; returns
    its size in bytes. The codes it gives equal those of `src` loaded at float16 precision."""
    src, dst = Path(src), Path(dst)
    state = read_weights(src)
    cfg = config_of(state, src)
    if cfg is None:
        raise BridgeError(f"{src}: not a codec made by `codec_bridge train` (no {CONFIG_KEY})")
    model = build_model(cfg)
    model.load_state_dict(complete_state(state["state_dict"]))
    save_weights(dst, model, cfg, release=True)
    return dst.stat().st_size
