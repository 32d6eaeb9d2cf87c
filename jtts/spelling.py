"""Token embeddings composed from spelling, so a Whisper token never seen in training reads.

With 51,865 BPE ids most English words are a single token, and a word absent from the
training text has an untrained row in the embedding table: the model cannot say it.
`SpellingEmbed` computes a token's vector from its bytes instead (a BPE token's UTF-8 bytes,
a special token's name; `jtts.text.whisper_token_bytes`) through a small character CNN that
all tokens share (the word encoder of ELMo and CharacterBERT): byte and position embeddings,
two convolutions over the bytes, a max over them, a projection to `d_model`. A token it never
saw gets the vector its spelling implies. `model.text_embed` chooses the table ("table", the
default, as before), the spelling alone ("spelling"), or their sum ("both").

`model.text_units="bytes"` goes further and makes each byte of a token's spelling one text
position (`to_units`; `ByteEmbed` gives it the byte's and its place's vectors), as Tacotron
reads characters: positions of nearly even duration, which the diagonal attention prior fits
far better than BPE tokens of one to ten phonemes, and 256 symbols that every word trains.
"""

from __future__ import annotations

from functools import cache

import jax
import numpy as np
from flax import nnx
from jax import numpy as jnp

from jtts.config import ModelConfig
from jtts.text import whisper_token_bytes

MAX_BYTES = 24  # of Whisper's 50,257 BPE tokens 4 are longer (at most 33 bytes): truncated
PAD = 256  # the byte id after a token's end
N_BPE = 50257  # Whisper's BPE ranks; the ids after them are special tokens
SPECIAL = PAD + 1  # the one byte a special token (<|endoftext|>) has in the byte stream


@cache
def spellings(vocab_size: int) -> np.ndarray:
    """bytes_VxL (int16, PAD-filled) of ids 0..vocab_size-1; ids past Whisper's are empty."""
    table = np.full((vocab_size, MAX_BYTES), PAD, np.int16)
    for i, b in enumerate(whisper_token_bytes()[:vocab_size]):
        b = b[:MAX_BYTES]
        table[i, : len(b)] = np.frombuffer(b, np.uint8)
    return table


def to_units(ids: np.ndarray, units: str) -> np.ndarray:
    """Text positions of token ids: the ids ("tokens"), or ("bytes") one unit per byte of each
    id's spelling, numbered id * MAX_BYTES + the byte's index in the token."""
    if units == "tokens":
        return ids
    ids = np.asarray(ids, np.int64)
    counts = (unit_bytes(len(whisper_token_bytes()))[ids] != PAD).sum(axis=1)
    starts = np.cumsum(counts) - counts
    index = np.arange(counts.sum()) - np.repeat(starts, counts)
    return (np.repeat(ids, counts) * MAX_BYTES + index).astype(np.int32)


def unit_tokens(units_BxS: jax.Array) -> jax.Array:
    """The token id of each unit made by `to_units(..., "bytes")`."""
    return units_BxS // MAX_BYTES


@cache
def unit_bytes(vocab_size: int) -> np.ndarray:
    """`spellings` with each special token spelled as the one SPECIAL byte."""
    table = spellings(vocab_size).copy()
    table[N_BPE:] = PAD
    table[N_BPE:, 0] = SPECIAL
    return table


class ByteEmbed(nnx.Module):
    """Byte units_BxS (`to_units`) -> vectors_BxSxD: the byte's plus its place in the token's."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        init, pdt = nnx.initializers.normal(cfg.init_std), jnp.dtype(cfg.param_dtype)
        self.byte_embed = nnx.Param(init(rngs.params(), (SPECIAL + 1, cfg.d_model), pdt))
        self.pos_embed = nnx.Param(init(rngs.params(), (MAX_BYTES, cfg.d_model), pdt))

    def __call__(self, units_BxS: jax.Array) -> jax.Array:
        table = jnp.asarray(unit_bytes(self.cfg.text_vocab_size))
        index_BxS = units_BxS % MAX_BYTES
        bytes_BxS = table[unit_tokens(units_BxS), index_BxS].astype(jnp.int32)
        x = jnp.take(self.byte_embed[...], bytes_BxS, axis=0)
        return x + jnp.take(self.pos_embed[...], index_BxS, axis=0)


class SpellingEmbed(nnx.Module):
    """Token ids_BxS -> vectors_BxSxD computed from each token's bytes."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        c, pdt = cfg.spelling_dim, jnp.dtype(cfg.param_dtype)
        init = nnx.initializers.normal(cfg.init_std)
        self.byte_embed = nnx.Param(init(rngs.params(), (PAD + 1, c), pdt))
        self.pos_embed = nnx.Param(init(rngs.params(), (MAX_BYTES, c), pdt))
        conv = dict(kernel_size=(3,), padding="SAME", dtype=jnp.dtype(cfg.dtype), param_dtype=pdt)
        self.conv1 = nnx.Conv(c, c, **conv, rngs=rngs)
        self.conv2 = nnx.Conv(c, c, **conv, rngs=rngs)
        self.proj = nnx.Linear(
            c,
            cfg.d_model,
            dtype=jnp.dtype(cfg.dtype),
            param_dtype=pdt,
            rngs=rngs,
            kernel_init=init,
        )

    def __call__(self, ids_BxS: jax.Array) -> jax.Array:
        dtype = jnp.dtype(self.cfg.dtype)
        bytes_BxSxL = jnp.asarray(spellings(self.cfg.text_vocab_size))[ids_BxS]
        real_BxSxLx1 = (bytes_BxSxL != PAD)[..., None]
        x = jnp.take(self.byte_embed[...], bytes_BxSxL.astype(jnp.int32), axis=0)
        x = (x + self.pos_embed[...]).astype(dtype)
        b, s, length, c = x.shape
        x = x.reshape(b * s, length, c)  # one "sequence" of bytes per token
        x = jax.nn.gelu(self.conv1(x))
        x = jax.nn.gelu(self.conv2(x)).reshape(b, s, length, c)
        # Max over the token's real bytes; an empty token (id 50256) gets zeros.
        x = jnp.where(real_BxSxLx1, x, jnp.finfo(dtype).min).max(axis=2)
        x = jnp.where(real_BxSxLx1.any(axis=2), x, 0)
        return self.proj(x)
