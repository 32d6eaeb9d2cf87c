"""Exact batched encoding for the causal (24 kHz) EnCodec: many utterances, one pass.

Zero-padding utterances into a batch and calling ``model.encode`` is not enough:

* encodec reflect-pads a strided conv's input after the last sample when an utterance is
  encoded alone; in a padded batch those positions hold zeros (or an earlier layer's output
  of them), so the last frame would change. `front.restore_right_edge` writes each row's own
  reflect padding there before every strided conv.
* Long rows are slow on a CPU: 32 channels x minutes of samples fall out of the caches.
  The convolutional front (all layers before the LSTM, a receptive field of ~800 samples)
  therefore runs on fixed-size chunks of every utterance, each with enough left context that
  its kept frames do not see the chunk edge; only the LSTM and what follows run on whole
  (padded) utterances, which also batches the LSTM's per-step matrix products.

Each utterance's frames are trimmed back to what it gives alone: ``ceil(samples / hop)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from encodec import EncodecModel
from encodec.modules.conv import SConv1d
from encodec.modules.lstm import SLSTM

from codec_bridge.front import Front, geometry, supported, walk


@dataclass(frozen=True)
class _Piece:
    utt: int
    start: int  # first input sample
    stop: int  # one past the last input sample
    skip: int  # leading output frames that only serve as context
    frames: int  # output frames kept


class BatchEncoder:
    """Encodes lists of utterances with a causal `EncodecModel`, frame for frame as alone.

    ``chunk_frames`` frames per front chunk; ``rows_per_pass`` chunks per front pass (None:
    all at once, for GPUs)."""

    def __init__(self, model: EncodecModel, chunk_frames: int = 75, rows_per_pass: int | None = 2):
        seq = model.encoder.model
        cut = next((i for i, m in enumerate(seq) if isinstance(m, SLSTM)), len(seq))
        self.model, self.front, self.back = model, seq[:cut], seq[cut:]
        self.convs = [m for m in seq.modules() if isinstance(m, SConv1d)]
        self.run_front = Front(self.front)
        self.hop = int(np.prod(model.encoder.ratios))
        reach, stride = 0, 1
        for conv in (m for m in self.front.modules() if isinstance(m, SConv1d)):
            k, s, d, _ = geometry(conv)
            reach += (k - 1) * d * stride
            stride *= s
        # Twice the receptive field, in whole frames so chunks stay aligned to the strides.
        self.context = math.ceil(2 * reach / self.hop) * self.hop
        self.chunk_frames = chunk_frames
        self.rows_per_pass = rows_per_pass

    @staticmethod
    def supports(model: EncodecModel) -> bool:
        """A causal model in a single segment: the only case where padding cannot leak."""
        seq = model.encoder.model
        cut = next((i for i, m in enumerate(seq) if isinstance(m, SLSTM)), len(seq))
        back = [m for m in seq[cut:].modules() if isinstance(m, SConv1d)]
        causal = all(c.causal and geometry(c)[1] == 1 for c in back)
        return model.segment is None and not model.normalize and causal and supported(seq[:cut])

    def plan(self, samples: int) -> tuple[int, bool]:
        """(frames the model gives ``samples`` alone, whether `encode` can batch it)."""
        return walk(self.convs, samples)

    def _pieces(self, utt: int, samples: int, frames: int) -> list[_Piece]:
        pieces = []
        for f0 in range(0, frames, self.chunk_frames):
            f1 = min(f0 + self.chunk_frames, frames)
            start = max(0, f0 * self.hop - self.context)
            stop = samples if f1 == frames else f1 * self.hop
            pieces.append(_Piece(utt, start, stop, (f0 * self.hop - start) // self.hop, f1 - f0))
        return pieces

    def _front(self, wavs: list[torch.Tensor], pieces: list[_Piece], device) -> list[torch.Tensor]:
        """Front output ``[dim, frames]`` of every piece, computed a few rows at a time."""
        out = []
        step = self.rows_per_pass or len(pieces)
        for i in range(0, len(pieces), step):
            rows = pieces[i : i + step]
            lengths = [p.stop - p.start for p in rows]
            x = torch.zeros(len(rows), wavs[0].shape[0], max(lengths), device=device)
            for j, p in enumerate(rows):
                x[j, :, : lengths[j]] = wavs[p.utt][:, p.start : p.stop]
            x = self.run_front(x, lengths)
            out.extend(x[j, :, p.skip : p.skip + p.frames] for j, p in enumerate(rows))
        return out

    @torch.inference_mode()
    def encode(self, wavs: list[torch.Tensor], device) -> list[np.ndarray]:
        """Codes ``[K, T]`` per utterance ``[C, samples]``; every one must `plan` as batchable."""
        frames = [self.plan(w.shape[-1])[0] for w in wavs]
        pieces = [p for i, w in enumerate(wavs) for p in self._pieces(i, w.shape[-1], frames[i])]
        wavs = [w.to(device) for w in wavs]
        parts = self._front(wavs, pieces, device)
        emb = torch.zeros(len(wavs), parts[0].shape[0], max(frames), device=device)
        filled = [0] * len(wavs)
        for p, y in zip(pieces, parts, strict=True):
            emb[p.utt, :, filled[p.utt] : filled[p.utt] + p.frames] = y
            filled[p.utt] += p.frames
        emb = self.back(emb)
        m = self.model
        # One utterance at a time: its distance matrices stay in cache (and match `encode`'s).
        return [
            m.quantizer.encode(emb[i : i + 1, :, :t], m.frame_rate, m.bandwidth)[:, 0].cpu().numpy()
            for i, t in enumerate(frames)
        ]
