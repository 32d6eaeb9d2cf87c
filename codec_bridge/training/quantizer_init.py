"""Codebook k-means over many frames and dead-code replacement that lasts, from outside encodec.

encodec 0.1.1 runs its k-means on the first training batch only (a few hundred vectors for
1024 codes, and under autograd unless the caller disables it), and its dead-code expiry has no
lasting effect: ``expire_codes_`` writes into ``embed``, which the EMA update then overwrites
from ``embed_avg / cluster_size``. Codes without k-means members drift to ~1e5 and are never
chosen again. Here both are done on the package's `EuclideanCodebook` buffers directly
(``embed``, ``embed_avg``, ``cluster_size``, ``inited``), keeping them consistent so that the
package's own EMA update carries the change forward. The model classes stay the package's.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from encodec.quantization import ResidualVectorQuantizer
from encodec.quantization.core_vq import EuclideanCodebook
from scipy.cluster.vq import kmeans2


def codebooks(quantizer: ResidualVectorQuantizer) -> list[EuclideanCodebook]:
    return [layer._codebook for layer in quantizer.vq.layers]


def _set(book: EuclideanCodebook, rows: torch.Tensor, vectors: torch.Tensor, size: float) -> None:
    """Codes ``rows`` become ``vectors`` with EMA usage ``size``; the EMA keeps them there.

    The EMA sets ``embed = embed_avg / smoothed(cluster_size)``, and smoothing leaves a size
    of a few frames unchanged to within ``epsilon * bins``, so ``embed_avg = vectors * size``
    makes the next update reproduce ``vectors``."""
    book.embed[rows] = vectors
    book.cluster_size[rows] = size
    book.embed_avg[rows] = vectors * size


@torch.no_grad()
def kmeans_init(
    quantizer: ResidualVectorQuantizer,
    emb: torch.Tensor,
    frames_per_step: int,
    *,
    seed: int,
    iters: int = 20,
) -> None:
    """Initialize every codebook by k-means on encoder output ``emb`` ``[B, D, T]``.

    Level ``k`` clusters the residual left by levels ``< k``, as RVQ quantizes it. EMA usage
    starts at each code's share of ``frames_per_step`` (the frames one training step sees),
    so usage and the dead-code threshold are on the training batches' scale."""
    x = emb.transpose(1, 2).reshape(-1, emb.shape[1]).double().cpu().numpy()
    for level, book in enumerate(codebooks(quantizer)):
        k = book.codebook_size
        rng = np.random.default_rng([seed, level])
        if x.shape[0] >= k:
            with warnings.catch_warnings():  # empty clusters: left for DeadCodeReviver
                warnings.simplefilter("ignore", UserWarning)
                means, labels = kmeans2(x, k, iter=iters, minit="points", missing="warn", seed=rng)
        else:  # fewer vectors than codes: every vector is a code, the rest die and get revived
            means = x[rng.integers(0, x.shape[0], k)]
            labels = np.arange(x.shape[0])
        counts = np.bincount(labels, minlength=k)
        means_t = torch.from_numpy(means).to(book.embed)
        share = torch.from_numpy(counts * (frames_per_step / x.shape[0])).to(book.embed)
        book.embed.copy_(means_t)
        book.cluster_size.copy_(share)
        book.embed_avg.copy_(means_t * share[:, None])
        book.inited.fill_(1)
        x = x - means[labels]


class DeadCodeReviver:
    """Replace codes whose EMA usage fell below ``threshold`` x the uniform share with frames
    from the current batch, after each training step.

    The residual each level saw is taken from a forward pre-hook on its layer. A revived code
    starts at the uniform share of usage, so it has ~``log(threshold) / log(decay)`` steps to
    win frames before it counts as dead again."""

    def __init__(self, quantizer: ResidualVectorQuantizer, threshold: float = 0.1):
        self.quantizer, self.threshold = quantizer, threshold
        self._inputs: dict[int, torch.Tensor] = {}
        self._hooks = [
            layer.register_forward_pre_hook(self._keep(i))
            for i, layer in enumerate(quantizer.vq.layers)
        ]

    def _keep(self, level: int):
        def hook(module, args):
            if module.training:
                self._inputs[level] = args[0].detach()

        return hook

    @torch.no_grad()
    def step(self, frames_per_step: int, gen: torch.Generator) -> int:
        """Revive dead codes of the levels used in the last forward; returns how many."""
        revived = 0
        for level, x in sorted(self._inputs.items()):
            book = codebooks(self.quantizer)[level]
            uniform = frames_per_step / book.codebook_size
            dead = (book.cluster_size < self.threshold * uniform).nonzero().flatten()
            if dead.numel():
                x = x.transpose(1, 2).reshape(-1, x.shape[1])
                pick = torch.randint(0, x.shape[0], (dead.numel(),), generator=gen)
                _set(book, dead, x[pick], uniform)
                revived += dead.numel()
        self._inputs.clear()
        return revived

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def live_codes(quantizer: ResidualVectorQuantizer, frames_per_step: int, threshold: float = 0.1):
    """Per level, the codes whose EMA usage is at least ``threshold`` x the uniform share."""
    return [
        int((b.cluster_size >= threshold * frames_per_step / b.codebook_size).sum())
        for b in codebooks(quantizer)
    ]


@torch.no_grad()
def codes_used(codes: torch.Tensor, bins: int) -> list[int]:
    """Distinct codes per level in ``codes`` ``[K, ...]`` (e.g. a validation set's)."""
    return [int(torch.bincount(c.flatten(), minlength=bins).gt(0).sum()) for c in codes]
