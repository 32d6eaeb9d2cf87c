"""Seeded random EnCodec weights for pipeline tests where the published ones are unavailable.

The codes they give are not speech codes, but they must behave like codes: vary with the
audio, use many of the 1024 entries, and not hinge on float rounding, or tests of batching
and storage would pass vacuously.
"""

from __future__ import annotations

import math

import torch
from encodec import EncodecModel
from torch import nn


def _calibration(model: EncodecModel, gen: torch.Generator) -> torch.Tensor:
    """Three seconds of seeded noise, tones and random walks at -60..-6 dBFS (encoder input)."""
    n = model.sample_rate // 4
    t = torch.arange(n) / model.sample_rate
    parts = []
    for i in range(12):
        level = 10 ** (-3 + 2.7 * torch.rand(1, generator=gen).item())
        if i % 3 == 0:
            x = torch.randn(n, generator=gen)
        elif i % 3 == 1:
            x = torch.sin(
                2 * math.pi * (50 + 1000 * torch.rand(1, generator=gen).item()) * t * (1 + t)
            )
        else:
            x = torch.randn(n, generator=gen).cumsum(0)
            x = (x - x.mean()) / x.abs().max()
        parts.append(level * x)
    x = torch.cat(parts).expand(model.channels, -1)[None]
    if model.normalize:  # what _encode_frame feeds the encoder
        x = x / (1e-8 + x.mean(1, keepdim=True).pow(2).mean(2, keepdim=True).sqrt())
    return x


@torch.inference_mode()
def randomize(model: EncodecModel, seed: int) -> EncodecModel:
    """Give a freshly built (seeded) ``model`` random weights that still make informative codes.

    PyTorch's default init makes the encoder output a near-constant bias, so every frame got
    the same code and float noise decided ties. Here every conv has zero bias and unit-norm
    filters (signal-driven, well-conditioned activations), and each codebook is sampled from
    the residuals of the random encoder on a seeded calibration signal (encodec's own data-
    driven init, without k-means), so codes vary with the audio like real ones do."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            m.bias.zero_()
            if hasattr(m, "weight_g"):
                m.weight_g.fill_(1.0)
            else:
                m.weight.div_(m.weight.flatten(1).norm(dim=1).view(-1, *[1] * (m.weight.dim() - 1)))
        elif isinstance(m, nn.LSTM):
            for name, p in m.named_parameters():
                if name.startswith("bias"):
                    p.zero_()
    gen = torch.Generator().manual_seed(seed)
    x = model.encoder(_calibration(model, gen))[0].T  # [frames, dim]
    for layer in model.quantizer.vq.layers:
        book = layer._codebook
        pick = torch.randint(0, x.shape[0], (book.codebook_size,), generator=gen)
        jitter = 0.1 * x.std(0, keepdim=True) * torch.randn(book.embed.shape, generator=gen)
        book.embed.copy_(x[pick] + jitter)
        book.embed_avg.copy_(book.embed)
        book.inited.fill_(1)
        x = x - book.embed[book.encode(x)]
    return model
