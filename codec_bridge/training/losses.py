"""Reconstruction losses for codec training, after AudioCraft's compression solver.

Multi-resolution log-mel L1 (several STFT windows, so both pitch harmonics and onsets are
penalized) plus waveform L1; the quantizer adds its commitment loss. The single-resolution
`log_mel` is also the distance `evaluate` reports, so training and evaluation agree on it.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

LOG_FLOOR = 1e-5


class LogMel(nn.Module):
    """``log(max(mel power, floor))`` of ``[B, C, samples]`` (channels averaged first)."""

    def __init__(self, sample_rate: int, n_fft: int, n_mels: int):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=n_fft,
            hop_length=n_fft // 4,
            n_mels=n_mels,
            f_min=0.0,
            f_max=sample_rate / 2,
            power=2.0,
            center=True,
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.mel(wav.mean(1)).clamp_min(LOG_FLOOR).log()


class MultiResolutionMelLoss(nn.Module):
    """Mean over windows of the L1 distance between log-mel spectrograms."""

    def __init__(self, sample_rate: int, windows: tuple[int, ...] = (256, 512, 1024, 2048)):
        super().__init__()
        self.mels = nn.ModuleList(LogMel(sample_rate, n, min(80, n // 8)) for n in windows)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.stack([(m(pred) - m(target)).abs().mean() for m in self.mels]).mean()


def log_mel_distance(pred: torch.Tensor, target: torch.Tensor, sample_rate: int) -> float:
    """Mean L1 between 80-band log-mel spectrograms (1024-sample window) of two waveforms
    ``[C, samples]``, after trimming to the shorter one and matching ``pred``'s RMS to
    ``target``'s: codes do not store loudness, so a gain difference is not an error here."""
    n = min(pred.shape[-1], target.shape[-1])
    pred, target = pred[..., :n], target[..., :n]
    gain = target.pow(2).mean().sqrt() / pred.pow(2).mean().sqrt().clamp_min(1e-8)
    m = LogMel(sample_rate, 1024, 80)
    return float((m(pred[None] * gain) - m(target[None])).abs().mean())


def si_snr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Scale-invariant signal-to-noise ratio in dB of ``pred`` against ``target`` (mono mix)."""
    n = min(pred.shape[-1], target.shape[-1])
    p, t = pred[..., :n].double().mean(0), target[..., :n].double().mean(0)
    p, t = p - p.mean(), t - t.mean()
    proj = (p @ t) / (t @ t).clamp_min(1e-12) * t
    noise = p - proj
    return float(10 * torch.log10(proj.pow(2).sum() / noise.pow(2).sum().clamp_min(1e-12)))
