"""What a codec training run writes besides checkpoints: metrics, evaluations, samples.

The metrics file holds one JSON object per logged step (``kind`` ``train`` or ``eval``);
on resume, lines after the checkpoint's step are dropped, so a run killed between a log line
and the next checkpoint does not log those steps twice. TensorBoard gets the same scalars
(via tensorboardX, purged past the resume step). Every evaluation decodes the held-out
utterances through the codes, as `extract` + `decode` would, and keeps the first two as audio
beside a spectrogram (original over reconstruction). Where each goes: `rundir.CodecRunDir`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from tensorboardX import SummaryWriter

from codec_bridge.training.losses import LogMel, log_mel_distance, si_snr
from codec_bridge.training.quantizer_init import codes_used
from codec_bridge.training.rundir import CodecRunDir

SAMPLES_KEPT = 2


def _truncate_jsonl(path: Path, step: int) -> None:
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by kill -9
    path.write_text("".join(f"{x}\n" for x in keep), encoding="utf-8")


@torch.no_grad()
def resynthesize(model, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes ``[K, T]``, audio ``[C, samples]``) of one utterance through the codes, with
    its own loudness scale (what decoding gives when the scale is known)."""
    dev = next(model.parameters()).device
    frames = model.encode(wav[None].to(dev))
    audio = model.decode(frames)[0, :, : wav.shape[-1]].cpu()
    return torch.cat([c for c, _ in frames], dim=-1)[0].cpu(), audio


class Reporter:
    def __init__(self, run_dir: CodecRunDir, step: int, sample_rate: int):
        self.dir, self.sample_rate = run_dir, sample_rate
        self.metrics = run_dir.metrics
        _truncate_jsonl(self.metrics, step)
        self.tb = SummaryWriter(str(run_dir.tensorboard), purge_step=step + 1 if step else None)

    def _write(self, row: dict[str, Any]) -> None:
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if isinstance(v, (int, float)) and k != "step":
                self.tb.add_scalar(f"{row['kind']}/{k}", v, row["step"])
            elif isinstance(v, list):
                for level, n in enumerate(v):
                    self.tb.add_scalar(f"{row['kind']}/{k}_q{level}", n, row["step"])

    def log(self, step: int, values: dict[str, Any], live: list[int]) -> None:
        self._write({"kind": "train", "step": step, **values, "live_codes": live})

    @torch.no_grad()
    def evaluate(self, step: int, model, utterances, mel_loss) -> dict[str, Any]:
        """Held-out reconstruction through the codes: multi-resolution mel loss, log-mel
        distance, SI-SNR and distinct codes per level."""
        if not utterances:
            return {}
        was_training = model.training
        model.eval()
        rows, codes, first = [], [], None
        for i, u in enumerate(utterances):
            c, y = resynthesize(model, u.wav)
            codes.append(c)
            first = y if first is None else first
            rows.append(
                (
                    float(mel_loss(y[None], u.wav[None])),
                    log_mel_distance(y, u.wav, self.sample_rate),
                    si_snr(y, u.wav),
                )
            )
            if i < SAMPLES_KEPT:
                self.dir.samples(step).mkdir(parents=True, exist_ok=True)
                sf.write(
                    str(self.dir.sample(step, u.id)),
                    np.clip(y.numpy().T, -1, 1),
                    self.sample_rate,
                )
        self._spectrogram(self.dir.spectrogram(step), utterances[0], first)
        model.train(was_training)
        mel, dist, snr = (float(np.mean(col)) for col in zip(*rows, strict=True))
        used = codes_used(torch.cat(codes, dim=-1), model.quantizer.bins)
        row = {
            "kind": "eval",
            "step": step,
            "mel": mel,
            "log_mel_distance": dist,
            "si_snr": snr,
            "codes_used": used,
        }
        self._write(row)
        return row

    def _spectrogram(self, path: Path, utt, recon: torch.Tensor) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        mel = LogMel(self.sample_rate, 1024, 80)
        fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
        for ax, wav, title in ((axes[0], utt.wav, "original"), (axes[1], recon, "codec")):
            ax.imshow(mel(wav[None])[0].numpy(), origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"{utt.id}: {title}")
            ax.set_ylabel("mel band")
        axes[1].set_xlabel("frame")
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)

    def close(self) -> None:
        self.tb.close()
