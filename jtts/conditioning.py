"""What the decoder is conditioned on: named attributes, each with its own encoder, its own
guidance dropout and its own way of joining the decoder (AudioCraft's ConditioningAttributes,
ConditionFuser and AttributeDropout, as one pytree and pure functions).

The text is always an attribute: token ids, encoded by a bidirectional transformer that every
decoder layer cross-attends (the "cross" join; the alignment prior, the length head and the
attention measurements read it). Every other attribute is declared once in `ATTRIBUTES`: the
code store record field its value comes from, and how it is encoded and joined. Those of today
are categories (the speaker, from the store's `speaker` field): a name, looked up in the run's table of names
(`model.conditions[].values`, filled from the training store by `resolve` and saved with the
run's config), embedded by a learned table and added to every decoder input step (the "sum"
join). The config turns them on (`model.conditions`); the loader, the train and eval steps, the
decode loop and the sampler (`--NAME`, `--list-NAMEs`) handle every registered attribute alike,
so a new category is one entry here. A voice prompt is not an attribute: it is no encoded
condition the model trains with but the decoder's own past (codec codes fed once through its
prefill), so `jtts.decode` owns it.

`Cond` carries each attribute's arrays and its own drop mask from the loader (or the sampler)
to the model. `guidance_dropout` drops each attribute with its own probability,
`with_null_rows` drops them all (or the text alone) for classifier-free guidance, `mismatched`
swaps one attribute between rows so the reading of that attribute alone is measured, and
`Conditioner` (the fuser) encodes each attribute and joins them into the `Memory` the decoder
reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx
from jax import numpy as jnp

from jtts.config import ConditionConfig, ConfigError, ModelConfig
from jtts.layers import ConvBlock, EncoderLayer, LayerStack, RMSNorm, split_rng
from jtts.spelling import ByteEmbed, SpellingEmbed, unit_tokens

TEXT = "text"


@dataclasses.dataclass(frozen=True)
class Attribute:
    """A category the decoder can be conditioned on besides the text: embedded by a table of
    the run's names, its vector added to every decoder input step."""

    name: str  # model.conditions[].name; the sampler's --NAME and --list-NAMEs
    field: str  # the code store record field that holds each utterance's value
    help: str  # what the sampler's --NAME option chooses


ATTRIBUTES: dict[str, Attribute] = {
    "speaker": Attribute("speaker", field="speaker", help="the speaker whose voice to speak in"),
}


def attributes(cfg: ModelConfig) -> list[tuple[Attribute, ConditionConfig]]:
    """The run's attributes besides the text, in config order, each with its settings."""
    out, seen = [], set()
    for c in cfg.conditions:
        if c.name not in ATTRIBUTES:
            known = ", ".join(ATTRIBUTES) or "none"
            raise ConfigError(
                f"model.conditions: unknown attribute {c.name!r} (the text is always read); "
                f"known: {known}"
            )
        if c.name in seen:
            raise ConfigError(f"model.conditions: {c.name!r} is listed twice")
        seen.add(c.name)
        out.append((ATTRIBUTES[c.name], c))
    return out


def resolve(cfg: ModelConfig, records: Iterable[dict[str, Any]]) -> ModelConfig:
    """`cfg` with each attribute's table of names filled from the training store's `records`
    (sorted) where the config leaves it empty; a name missing from a given table, or an
    utterance without a value, is a ValueError naming it."""
    attrs = attributes(cfg)
    if not attrs:
        return cfg
    found: dict[str, set[str]] = {a.name: set() for a, _ in attrs}
    for rec in records:
        for a, _ in attrs:
            value = rec.get(a.field)
            if not isinstance(value, str) or not value:
                raise ValueError(
                    f"utterance {rec['id']!r} has no {a.field} (model.conditions has {a.name!r}); "
                    f"extract the store with a {a.field} for every utterance"
                )
            found[a.name].add(value)
    conditions = []
    for a, c in attrs:
        if not c.values:
            c = dataclasses.replace(c, values=tuple(sorted(found[a.name])))
        elif missing := sorted(found[a.name] - set(c.values)):
            raise ValueError(
                f"model.conditions {a.name!r}: the store's {', '.join(missing[:5])} "
                f"{'is' if len(missing) == 1 else 'are'} not in its values {list(c.values)[:5]}"
            )
        conditions.append(c)
    return dataclasses.replace(cfg, conditions=tuple(conditions))


def table_rows(cfg: ModelConfig) -> dict[str, tuple[str, ...]]:
    """Each category table's parameter path (the `Conditioner`'s layout) and the name of each
    of its rows, so that a warm start carries rows over by name (`jtts.warmstart`)."""
    return {f"conditioner/{a.name}/table": c.values for a, c in attributes(cfg)}


# A category id that selects the attribute's learned null, the value guidance dropout trains:
# no speaker, so a voice prompt alone sets the voice.
NULL = -1


def lookup(cfg: ModelConfig, name: str, value: str) -> int:
    """The id of `value` in attribute `name`'s table; a ValueError listing the table if absent."""
    values = next(c.values for a, c in attributes(cfg) if a.name == name)
    if value not in values:
        raise ValueError(f"unknown {name} {value!r}; known: {', '.join(values)}")
    return values.index(value)


class Text(NamedTuple):
    ids_BxS: jax.Array  # int32 Whisper ids, ending with <|endoftext|>
    mask_BxS: jax.Array  # bool; every row has at least one real token


class Cond(NamedTuple):
    """A batch's conditioning: each attribute's arrays (the text as `Text`, a category as
    int32 ids_B) and, per attribute, the rows that see its learned null instead (bool B)."""

    inputs: dict[str, Any]
    dropped: dict[str, jax.Array]

    @staticmethod
    def of_text(text_BxS, text_mask_BxS, **categories_B) -> Cond:
        """A condition with no dropped rows (numpy in, numpy out; jax in, jax out)."""
        xp = jnp if isinstance(text_BxS, jax.Array) else np
        inputs = {TEXT: Text(text_BxS, text_mask_BxS), **categories_B}
        return Cond(inputs, {name: xp.zeros(text_BxS.shape[0], bool) for name in inputs})

    @property
    def text_BxS(self) -> jax.Array:
        return self.inputs[TEXT].ids_BxS

    @property
    def text_mask_BxS(self) -> jax.Array:
        return self.inputs[TEXT].mask_BxS

    @property
    def text_lengths_B(self) -> jax.Array:
        return self.text_mask_BxS.sum(axis=-1)

    @property
    def drop_B(self) -> jax.Array:
        """The rows that lose their text."""
        return self.dropped[TEXT]


def drop(cond: Cond, drop_B: jax.Array, names: Sequence[str] | None = None) -> Cond:
    """Rows where `drop_B` is true lose the `names` attributes (default: all of them)."""
    dropped = {k: v | drop_B if names is None or k in names else v for k, v in cond.dropped.items()}
    return cond._replace(dropped=dropped)


def guidance_dropout(cond: Cond, cfg: ModelConfig, key: jax.Array) -> Cond:
    """Each attribute dropped row by row with its own probability (the text's is
    `model.cond_drop_prob`), independently of the others."""
    rows = cond.drop_B.shape[0]
    cond = drop(cond, jax.random.bernoulli(key, cfg.cond_drop_prob, (rows,)), (TEXT,))
    for i, (a, c) in enumerate(attributes(cfg), 1):
        hit = jax.random.bernoulli(jax.random.fold_in(key, i), c.drop_prob, (rows,))
        cond = drop(cond, hit, (a.name,))
    return cond


def with_null_rows(cond: Cond, names: Sequence[str] | None = None) -> Cond:
    """Conditional rows, then the same rows with the `names` attributes dropped (default:
    every one): one batch of 2B for guidance."""
    both = jax.tree.map(lambda x: jnp.concatenate([x, x], axis=0), cond)
    b = cond.drop_B.shape[0]
    return drop(both, jnp.arange(2 * b) >= b, names)


def mismatched(cond: Cond, valid_B: jax.Array, name: str = TEXT) -> Cond:
    """Each valid row gets attribute `name` of the next valid row (cyclically), the others
    stay its own: a model that reads that attribute is measured against one that is given
    another utterance's."""
    b = valid_B.shape[0]
    order = jnp.argsort(~valid_B, stable=True)  # valid rows first, in batch order
    n = jnp.maximum(valid_B.sum(), 1)
    position_B = jnp.zeros(b, jnp.int32).at[order].set(jnp.arange(b, dtype=jnp.int32))
    partner_B = jnp.where(valid_B, order[(position_B + 1) % n], jnp.arange(b))
    swap = jax.tree.map(lambda x: x[partner_B], (cond.inputs[name], cond.dropped[name]))
    return Cond({**cond.inputs, name: swap[0]}, {**cond.dropped, name: swap[1]})


class Memory(NamedTuple):
    """What the decoder reads of a condition: one vector per text position to cross-attend,
    and (None without any "sum" attribute) one vector per row added to every input step;
    also the text's own encoding, before rows dropped for guidance are nulled, which the
    length and phoneme heads read (one encoder pass serves all three)."""

    enc_BxSxD: jax.Array
    mask_BxS: jax.Array
    input_BxD: jax.Array | None
    text_BxSxD: jax.Array


class CategoryEncoder(nnx.Module):
    """A category's ids -> rows of a learned table; dropped rows get a learned null row."""

    def __init__(self, cfg: ModelConfig, n: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(cfg.init_std)
        pdt = jnp.dtype(cfg.param_dtype)
        self.table = nnx.Param(init(rngs.params(), (n, cfg.d_model), pdt))
        self.null_cond = nnx.Param(init(rngs.params(), (cfg.d_model,), pdt))

    def __call__(self, ids_B: jax.Array, dropped_B: jax.Array) -> jax.Array:
        x_BxD = jnp.take(self.table[...], ids_B, axis=0)
        return jnp.where(dropped_B.astype(bool)[:, None], self.null_cond[...][None], x_BxD)


class Conditioner(nnx.Module):
    """`Cond` -> `Memory` (the fuser): the text's embedding and bidirectional encoder, whose
    rows dropped for guidance see one learned null vector at position 0, and an encoder per
    category, summed. The text encoder's parameters sit on the Conditioner itself, where
    checkpoints written before the other attributes existed have them."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        init = nnx.initializers.normal(cfg.init_std)
        pdt = jnp.dtype(cfg.param_dtype)
        if cfg.text_embed in ("table", "both"):
            shape = (cfg.text_vocab_size, cfg.d_model)
            self.text_embed = nnx.Param(init(rngs.params(), shape, pdt))
        if cfg.text_embed in ("spelling", "both"):
            self.spelling = SpellingEmbed(cfg, rngs=rngs)
        if cfg.text_units == "bytes":
            self.bytes = ByteEmbed(cfg, rngs=rngs)
        self.null_cond = nnx.Param(init(rngs.params(), (cfg.d_model,), pdt))
        self.text_conv = nnx.List([ConvBlock(cfg, rngs=rngs) for _ in range(cfg.text_conv_layers)])
        self.encoder = LayerStack(
            lambda r: EncoderLayer(cfg, rngs=r), cfg.enc_layers, scan=cfg.scan_layers, rngs=rngs
        )
        self.enc_norm = RMSNorm(cfg)
        self.categories = tuple(a.name for a, _ in attributes(cfg))
        for a, c in attributes(cfg):
            setattr(self, a.name, CategoryEncoder(cfg, len(c.values), rngs=rngs))

    def _embed_text(self, ids_BxS: jax.Array) -> jax.Array:
        """Each text position's vector: its byte's (text_units=bytes) plus its token's."""
        parts, tokens_BxS = [], ids_BxS
        if self.cfg.text_units == "bytes":
            parts.append(self.bytes(ids_BxS))
            tokens_BxS = unit_tokens(ids_BxS)
        if self.cfg.text_embed in ("table", "both"):
            parts.append(jnp.take(self.text_embed[...], tokens_BxS, axis=0))
        if self.cfg.text_embed in ("spelling", "both"):
            parts.append(self.spelling(tokens_BxS))
        return sum(parts[1:], parts[0])

    def encode_text(self, text: Text, *, dropout_rng: jax.Array | None = None) -> jax.Array:
        """The text's encoding enc_BxSxD, whether or not its rows are dropped."""
        x = self._embed_text(text.ids_BxS).astype(jnp.dtype(self.cfg.dtype))
        positions_S = jnp.arange(text.ids_BxS.shape[1])
        mask_Bx1x1xS = text.mask_BxS.astype(bool)[:, None, None, :]
        for block in self.text_conv:
            x = block(x, text.mask_BxS)

        def layer_fn(layer, x, rng):
            return layer(x, positions_S, mask_Bx1x1xS, rng), None

        rngs = split_rng(dropout_rng, self.cfg.enc_layers)
        x, _ = self.encoder.run(layer_fn, x, rngs, remat=self.cfg.remat)
        return self.enc_norm(x)

    def __call__(self, cond: Cond, *, dropout_rng: jax.Array | None = None) -> Memory:
        dtype = jnp.dtype(self.cfg.dtype)
        text_BxSxD = self.encode_text(cond.inputs[TEXT], dropout_rng=dropout_rng)
        drop_Bx1 = cond.drop_B.astype(bool)[:, None]
        null_1x1xD = self.null_cond[...].astype(dtype)[None, None, :]
        enc_BxSxD = jnp.where(drop_Bx1[:, :, None], null_1x1xD, text_BxSxD)
        null_mask_1xS = (jnp.arange(enc_BxSxD.shape[1]) == 0)[None, :]
        mask_BxS = jnp.where(drop_Bx1, null_mask_1xS, cond.text_mask_BxS.astype(bool))
        summed = [getattr(self, n)(cond.inputs[n], cond.dropped[n]) for n in self.categories]
        input_BxD = sum(summed).astype(dtype) if summed else None
        return Memory(enc_BxSxD, mask_BxS, input_BxD, text_BxSxD)
