"""The causal SEANet encoder's convolutional front, run without encodec's per-layer copies.

encodec's ``SConv1d`` reflect-pads every conv input into a new tensor (a full copy, even for
1x1 convs that pad nothing), recomputes its weight norm on every call, and every ELU
allocates its output. Here each conv uses its own zero padding and recomputes only the few
leading outputs whose window reaches into the (reflect) padding (the few extra outputs its
right-hand zero padding makes are junk past every row's end, like the batch padding itself),
weights are normalized once, and ELUs and residual sums work in place: about a fifth less
CPU time for the same arithmetic on the same weights, so codes agree with the modules' up to
float rounding ties.

Rows of a batch have their own valid lengths; before every top-level conv the positions just
after each row's end get the reflect padding encodec adds when that row is encoded alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from encodec.modules.conv import NormConv1d, SConv1d, pad1d
from encodec.modules.seanet import SEANetResnetBlock
from torch import nn


def geometry(conv: SConv1d) -> tuple[int, int, int, int]:
    """(kernel, stride, dilation, total padding) as `SConv1d.forward` computes them."""
    c = conv.conv.conv
    k, s, d = c.kernel_size[0], c.stride[0], c.dilation[0]
    return k, s, d, (k - 1) * d - (s - 1)


def extra_padding(n: int, k: int, s: int, pad: int) -> int:
    """`encodec.modules.conv.get_extra_padding_for_conv1d` for a length (same float math)."""
    frames = (n - k + pad) / s + 1
    return (math.ceil(frames) - 1) * s + (k - pad) - n


def walk(convs: Sequence[SConv1d], n: int) -> tuple[int, bool]:
    """Output length of ``convs`` for ``n`` inputs, and whether a padded row can reproduce the
    lone result: reflect padding of a tiny input reads past its end (needs ``n > padding``)."""
    fits = True
    for conv in convs:
        k, s, d, pad = geometry(conv)
        extra = extra_padding(n, k, s, pad)
        fits = fits and n > max(pad, extra)
        n = (n + pad + extra - (k - 1) * d - 1) // s + 1
    return n, fits


def restore_right_edge(x: torch.Tensor, lengths: list[int], conv: SConv1d) -> torch.Tensor:
    """Write after every row's last valid sample the padding ``conv`` gets when that row is
    encoded alone, then advance ``lengths`` to the conv's output lengths."""
    k, s, d, pad = geometry(conv)
    extras = [extra_padding(n, k, s, pad) for n in lengths]
    need = max(n + e for n, e in zip(lengths, extras, strict=True))
    if need > x.shape[-1]:
        x = F.pad(x, (0, need - x.shape[-1]))
    for i, (n, e) in enumerate(zip(lengths, extras, strict=True)):
        if e:
            x[i, :, n : n + e] = pad1d(x[i, :, :n], (0, e), conv.pad_mode)[:, n:]
    lengths[:] = [
        (n + pad + e - (k - 1) * d - 1) // s + 1 for n, e in zip(lengths, extras, strict=True)
    ]
    return x


class _Conv:
    """One causal ``SConv1d``: same weights, same left (reflect) padding, no input copy."""

    def __init__(self, conv: SConv1d):
        c = conv.conv.conv
        self.module = conv
        self.k, self.stride, self.dilation, self.pad = geometry(conv)
        self.weight = (
            torch._weight_norm(c.weight_v, c.weight_g, 0) if hasattr(c, "weight_g") else c.weight
        )
        self.bias = c.bias
        self.mode = conv.pad_mode
        self.heads = -(-self.pad // self.stride)  # outputs whose window starts in the padding
        reach = (self.k - 1) * self.dilation
        self.span = max((self.heads - 1) * self.stride + reach + 1 - self.pad, self.pad + 1)

    def __call__(self, x: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
        y = F.conv1d(x, self.weight, self.bias, self.stride, self.pad, self.dilation)
        if self.pad:
            head = F.pad(x[..., : self.span], (self.pad, 0), mode=self.mode)
            y[..., : self.heads] = F.conv1d(
                head, self.weight, self.bias, self.stride, 0, self.dilation
            )[..., : self.heads]
        return y


class _Elu:
    def __init__(self, elu: nn.ELU):
        self.alpha = elu.alpha

    def __call__(self, x: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
        return F.elu(x, self.alpha, inplace=overwrite)


class _Residual:
    def __init__(self, block: SEANetResnetBlock):
        self.shortcut = None if isinstance(block.shortcut, nn.Identity) else _Conv(block.shortcut)
        self.block = [_compile(m) for m in block.block]

    def __call__(self, x: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        h = x
        for op in self.block:  # x itself may be overwritten once the shortcut has used it
            h = op(h, overwrite=h is not x or (overwrite and skip is not x))
        h = h[..., : skip.shape[-1]]  # zero-padded convs leave a few junk outputs at the end
        # shortcut + block, as encodec sums them
        return skip.add_(h) if skip is not x or overwrite else skip + h


def _compile(m: nn.Module):
    if isinstance(m, SConv1d):
        return _Conv(m)
    if isinstance(m, nn.ELU):
        return _Elu(m)
    if isinstance(m, SEANetResnetBlock):
        return _Residual(m)
    raise TypeError(f"unsupported encoder layer {type(m).__name__}")


_PARTS = (SConv1d, NormConv1d, nn.Conv1d, nn.Identity, nn.ELU, SEANetResnetBlock, nn.Sequential)


def supported(layers: Sequence[nn.Module]) -> bool:
    """Causal reflect-padded convs with weight norm (or none), ELUs and residual blocks whose
    inner convs do not stride: the 24 kHz EnCodec encoder before its LSTM."""
    for top in layers:
        if not isinstance(top, (SConv1d, nn.ELU, SEANetResnetBlock)):
            return False
        for m in top.modules():
            if not isinstance(m, _PARTS):
                return False
            if isinstance(m, SConv1d) and not (
                isinstance(m.conv.norm, nn.Identity)
                and m.causal
                and m.pad_mode == "reflect"
                and (m is top or geometry(m)[1] == 1)
            ):
                return False
    return True


class Front:
    """Runs ``layers`` (see `supported`) on a batch of rows with per-row valid lengths."""

    def __init__(self, layers: Sequence[nn.Module]):
        self.layers = [(m if isinstance(m, SConv1d) else None, _compile(m)) for m in layers]

    def __call__(self, x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """``x`` ``[rows, channels, samples]`` (overwritten); ``lengths`` are advanced."""
        for conv, op in self.layers:
            if conv is not None:
                x = restore_right_edge(x, lengths, conv)
            x = op(x, overwrite=True)
        return x
