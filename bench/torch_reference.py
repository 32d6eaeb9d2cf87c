"""The jtts model and training step written in PyTorch eager: the baseline of bench/train.py.

Same architecture as jtts.model (pre-norm RMSNorm, split-half rotary self-attention, cross-
attention to the text, SwiGLU/GELU MLP, summed codebook embeddings, K output heads, a learned
null condition for classifier-free guidance), same delay pattern and masked per-codebook loss,
same optimizer (AdamW without decay on embeddings and norms, global-norm clipping). It uses
`F.scaled_dot_product_attention`, as a PyTorch user would. Reads jtts.config only (no jax).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from jtts.config import Config, ModelConfig


def rope(x_BxHxTxD: torch.Tensor, theta: float) -> torch.Tensor:
    half = x_BxHxTxD.shape[-1] // 2
    freq = theta ** (-torch.arange(half, dtype=torch.float32) / half)
    angle = torch.arange(x_BxHxTxD.shape[2], dtype=torch.float32)[:, None] * freq[None, :]
    sin, cos = angle.sin(), angle.cos()
    x1, x2 = x_BxHxTxD.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x_BxHxTxD.dtype)


class RMSNorm(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(cfg.d_model))
        self.eps = cfg.norm_eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale).to(
            x.dtype
        )


def linear(d_in: int, d_out: int, std: float) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=False)
    nn.init.normal_(layer.weight, std=std)
    return layer


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, rope_theta: float | None, kv_heads: int):
        super().__init__()
        inner, kv_inner = cfg.n_heads * cfg.resolved_head_dim, kv_heads * cfg.resolved_head_dim
        out_std = cfg.init_std / math.sqrt(2 * (cfg.enc_layers + cfg.dec_layers))
        self.q = linear(cfg.d_model, inner, cfg.init_std)
        self.k = linear(cfg.d_model, kv_inner, cfg.init_std)
        self.v = linear(cfg.d_model, kv_inner, cfg.init_std)
        self.o = linear(inner, cfg.d_model, out_std)
        self.d, self.theta = cfg.resolved_head_dim, rope_theta
        self.gqa = kv_heads != cfg.n_heads

    def _heads(self, x: torch.Tensor, rotate: bool) -> torch.Tensor:
        b, t, _ = x.shape
        x = x.view(b, t, -1, self.d).transpose(1, 2)
        return rope(x, self.theta) if rotate and self.theta else x

    def forward(self, x, kv, mask=None, causal=False):
        q, k, v = (
            self._heads(self.q(x), True),
            self._heads(self.k(kv), True),
            self._heads(self.v(kv), False),
        )
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=self.gqa
        )
        return self.o(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class Mlp(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        out_std = cfg.init_std / math.sqrt(2 * (cfg.enc_layers + cfg.dec_layers))
        self.kind = cfg.mlp
        self.up = linear(cfg.d_model, cfg.mlp_dim, cfg.init_std)
        self.gate = linear(cfg.d_model, cfg.mlp_dim, cfg.init_std) if cfg.mlp == "swiglu" else None
        self.down = linear(cfg.mlp_dim, cfg.d_model, out_std)

    def forward(self, x):
        h = F.silu(self.gate(x)) * self.up(x) if self.gate is not None else F.gelu(self.up(x))
        return self.down(h)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm, self.attn = (
            RMSNorm(cfg),
            Attention(cfg, cfg.rope_theta, cfg.resolved_kv_heads),
        )
        self.mlp_norm, self.mlp = RMSNorm(cfg), Mlp(cfg)

    def forward(self, x, mask):
        h = self.attn_norm(x)
        x = x + self.attn(h, h, mask)
        return x + self.mlp(self.mlp_norm(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_norm, self.self_attn = (
            RMSNorm(cfg),
            Attention(cfg, cfg.rope_theta, cfg.resolved_kv_heads),
        )
        self.cross_norm, self.cross_attn = RMSNorm(cfg), Attention(cfg, None, cfg.n_heads)
        self.mlp_norm, self.mlp = RMSNorm(cfg), Mlp(cfg)

    def forward(self, x, enc, enc_mask):
        h = self.self_norm(x)
        x = x + self.self_attn(h, h, causal=True)
        x = x + self.cross_attn(self.cross_norm(x), enc, enc_mask)
        return x + self.mlp(self.mlp_norm(x))


class TorchTTS(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, k, std = cfg.d_model, cfg.n_codebooks, cfg.init_std
        self.text_embed = nn.Parameter(torch.randn(cfg.text_vocab_size, d) * std)
        self.null_cond = nn.Parameter(torch.randn(d) * std)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.enc_norm = RMSNorm(cfg)
        self.code_embed = nn.Parameter(torch.randn(k, cfg.in_vocab_size, d) * std)
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.dec_norm = RMSNorm(cfg)
        self.heads = nn.Parameter(torch.randn(k, d, cfg.out_vocab_size) * std)

    def forward(self, text_BxS, text_mask_BxS, tokens_BxKxT, drop_cond_B):
        x = self.text_embed[text_BxS]
        mask_Bx1x1xS = text_mask_BxS[:, None, None, :]
        for layer in self.encoder:
            x = layer(x, mask_Bx1x1xS)
        enc = self.enc_norm(x)
        drop = drop_cond_B[:, None, None]
        enc = torch.where(drop, self.null_cond[None, None, :], enc)
        first = torch.arange(text_BxS.shape[1]) == 0
        enc_mask = torch.where(drop_cond_B[:, None], first[None, :], text_mask_BxS)[
            :, None, None, :
        ]
        y = sum(self.code_embed[k][tokens_BxKxT[:, k]] for k in range(tokens_BxKxT.shape[1]))
        for layer in self.decoder:
            y = layer(y, enc, enc_mask)
        return torch.einsum("btd,kdv->btkv", self.dec_norm(y), self.heads)


def delay_io(codes_BxKxT, lengths_B, codebook_size):
    """Delay pattern + teacher forcing, as jtts.patterns.DelayPattern.apply/decoder_io."""
    b, k, t = codes_BxKxT.shape
    eos, bos, pad = codebook_size, codebook_size + 1, codebook_size + 2
    frame = torch.arange(t + k)[None, None, :] - torch.arange(k)[None, :, None]
    gathered = codes_BxKxT.gather(2, frame.clamp(0, t - 1).expand(b, k, t + k))
    length = lengths_B[:, None, None]
    seq = torch.where(frame < length, gathered, pad)
    seq = torch.where(frame == length, eos, seq)
    seq = torch.where(frame < 0, bos, seq)
    inputs = torch.cat([torch.full((b, k, 1), bos), seq[:, :, :-1]], dim=2)
    mask = (seq != bos) & (seq != pad)
    return inputs, torch.where(mask, seq, 0), mask


def lr_factor(cfg: Config, step: int) -> float:
    """jtts.optim.lr_schedule / lr: linear warmup, then cosine to min_lr_ratio."""
    o, total = cfg.optim, cfg.train.steps
    warmup = min(o.warmup_steps, max(total - 1, 0))
    if step < warmup:
        return step / warmup
    if o.decay == "constant":
        return 1.0
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class TorchTrainer:
    """One optimizer step per call, mirroring jtts.train_step.TrainStep (grad_accum 1)."""

    def __init__(self, cfg: Config, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.model = TorchTTS(cfg.model)
        no_decay = ("text_embed", "code_embed", "null_cond", "scale")
        groups = [[], []]
        for name, p in self.model.named_parameters():
            groups[any(n in name for n in no_decay)].append(p)
        o = cfg.optim
        self.opt = torch.optim.AdamW(
            [
                {"params": groups[0], "weight_decay": o.weight_decay},
                {"params": groups[1], "weight_decay": 0.0},
            ],
            lr=o.lr,
            betas=(o.b1, o.b2),
            eps=o.eps,
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(cfg, s))

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        m, o = self.cfg.model, self.cfg.optim
        inputs, targets, mask = delay_io(batch["codes"], batch["lengths"], m.codebook_size)
        drop = torch.rand(inputs.shape[0]) < m.cond_drop_prob
        logits = self.model(batch["text"], batch["text_mask"], inputs, drop).float()
        nll = F.cross_entropy(logits.permute(0, 3, 1, 2), targets.transpose(1, 2), reduction="none")
        maskf = mask.transpose(1, 2).float()
        loss = (nll * maskf).sum() / maskf.sum().clamp(min=1)
        if o.z_loss:
            loss = loss + o.z_loss * (logits.logsumexp(-1).pow(2) * maskf).sum() / maskf.sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if o.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), o.clip_norm)
        self.opt.step()
        self.sched.step()
        return float(loss.detach())
