"""Run configuration: frozen dataclasses loaded from YAML and overridden with `--set a.b=v`.

Every value is type-checked against its dataclass annotation when a config is built, so a
typo in a YAML file or on the command line fails at startup with a one-line message that
names the key and lists the valid keys of its section, instead of deep inside training.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from codec_bridge.textfile import EncodingError, read_text
from jtts.text import NORMALIZERS


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type, or holds an invalid value."""


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def _at_least(obj: Any, section: str, minimum: float, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _check(value >= minimum, f"{section}.{name} must be >= {minimum}, got {value}")


@dataclasses.dataclass(frozen=True)
class ConditionConfig:
    """A conditioning attribute besides the text (registered in `jtts.conditioning.ATTRIBUTES`)."""

    name: str
    drop_prob: float = 0.1  # classifier-free guidance: P(this attribute alone replaced by its null)
    values: tuple[str, ...] = ()  # the names its ids index; empty: the training store's, sorted

    def __post_init__(self) -> None:
        _check(
            0.0 <= self.drop_prob <= 1.0,
            f"model.conditions {self.name!r}: drop_prob must be in [0, 1], got {self.drop_prob}",
        )
        _check(
            len(set(self.values)) == len(self.values),
            f"model.conditions {self.name!r}: values repeat a name",
        )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Encoder-decoder shape and numerics. Changing a field here changes what a checkpoint is."""

    d_model: int = 512
    n_heads: int = 8
    n_kv_heads: int | None = None  # self-attention K/V heads; None: n_heads; fewer: grouped-query
    head_dim: int | None = None  # None: d_model // n_heads
    enc_layers: int = 6
    dec_layers: int = 12
    mlp_dim: int = 2048
    mlp: Literal["swiglu", "gelu"] = "swiglu"
    text_vocab_size: int = 51865  # Whisper multilingual tokenizer
    max_text_len: int = 256
    max_frames: int = 1500  # decoder context in codec frames, before the pattern adds steps
    n_codebooks: int = 8  # K
    codebook_size: int = 1024
    pattern: str = "delay"  # name registered in jtts.patterns
    dropout: float = 0.0
    dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype
    param_dtype: Literal["float32", "bfloat16"] = "float32"
    remat: bool = False
    scan_layers: bool = False
    cond_drop_prob: float = 0.1  # classifier-free guidance: P(text replaced by null condition)
    # Attributes read besides the text (a speaker), each with its own dropout and table of
    # names (jtts.conditioning); none by default.
    conditions: tuple[ConditionConfig, ...] = ()
    # Cross-attention always adds RAD-TTS's beta-binomial alignment prior with this scaling
    # (smaller is wider): over the true length in training, over the length the model's
    # length head predicts from the text in sampling. None: no prior in the model. On by
    # default: without it the demo's attention never aligned and its model ignored the text
    # (held-out text gain 0.02 at 1000 steps; with it 0.15, and 1.55 with align.input_dropout).
    attention_prior: float | None = 0.5
    # Text token vectors: the embedding table, composed from the token's spelling so unseen
    # tokens read (jtts.spelling, a character CNN of width spelling_dim), or their sum.
    text_embed: Literal["table", "spelling", "both", "none"] = "table"
    # What one text position is: a Whisper token, or one byte of a token's spelling
    # ("bytes": jtts.spelling.to_units; each byte's vector adds its token's text_embed
    # vector, "none" leaving the bytes alone). Bytes give cross-attention units of even
    # duration, which the diagonal attention prior fits, and the same 256 symbols in every word.
    text_units: Literal["tokens", "bytes"] = "tokens"
    spelling_dim: int = 128
    # Convolutions (kernel text_conv_kernel, residual) over the text positions before the text
    # encoder's attention, as Tacotron 2 and Transformer-TTS read characters: a byte's sound
    # depends on its neighbours, which a convolution sees from the first step.
    text_conv_layers: int = 0
    text_conv_kernel: int = 5
    # A CTC head on the text encoding that emits the sentence's phonemes (jtts.pronounce),
    # trained with weight align.pron_weight: the encoder learns how its bytes sound.
    pron_head: bool = False
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02

    def __post_init__(self) -> None:
        _at_least(self, "model", 1, "d_model", "n_heads", "enc_layers", "dec_layers", "mlp_dim")
        _at_least(self, "model", 1, "text_vocab_size", "max_text_len", "max_frames")
        _at_least(self, "model", 1, "n_codebooks", "codebook_size", "spelling_dim")
        _at_least(self, "model", 0, "text_conv_layers")
        _at_least(self, "model", 1, "text_conv_kernel")
        _check(
            self.head_dim is not None or self.d_model % self.n_heads == 0,
            f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads}; "
            "set model.head_dim explicitly",
        )
        _check(self.resolved_head_dim % 2 == 0, "model head_dim must be even for rotary")
        _check(
            self.n_kv_heads is None
            or (self.n_kv_heads > 0 and self.n_heads % self.n_kv_heads == 0),
            f"model.n_kv_heads={self.n_kv_heads} must divide model.n_heads={self.n_heads}",
        )
        _check(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")
        _check(
            not self.pron_head or self.text_units == "bytes",
            "model.pron_head needs model.text_units=bytes (a BPE token has fewer positions "
            "than phonemes)",
        )
        _check(
            0.0 <= self.cond_drop_prob <= 1.0,
            f"model.cond_drop_prob must be in [0, 1], got {self.cond_drop_prob}",
        )
        _check(
            self.attention_prior is None or self.attention_prior > 0,
            f"model.attention_prior must be > 0 or null, got {self.attention_prior}",
        )
        _check(
            self.text_embed != "none" or self.text_units == "bytes",
            "model.text_embed=none leaves tokens without vectors; it needs model.text_units=bytes",
        )

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def resolved_kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def in_vocab_size(self) -> int:
        """Decoder input rows per codebook: codes + EOS + BOS + PAD (see jtts.patterns)."""
        return self.codebook_size + 3

    @property
    def out_vocab_size(self) -> int:
        """Output head width per codebook: codes + EOS."""
        return self.codebook_size + 1


# Model fields that may differ between a checkpoint and the run that restores it: they change
# numerics or regularisation, never parameter shapes or tree layout.
MODEL_RUNTIME_FIELDS = ("dropout", "dtype", "remat", "cond_drop_prob")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    batch_frames: int = 32768  # token budget per global batch: sum over rows of padded frames
    val_fraction: float = 0.02  # 0 disables validation
    max_frames: int = 1500  # longer utterances are cropped or dropped (and counted)
    crop_mode: Literal["crop", "drop"] = "crop"
    num_buckets: int = 8  # length buckets, quantile edges; ignored when bucket_sizes is set
    bucket_sizes: tuple[int, ...] | None = None  # explicit frame-length bucket upper bounds
    text_normalizer: str = "whisper_english"
    # Speaker balance in an epoch of training: each speaker's utterances are repeated
    # round((n_largest / n_speaker) ** speaker_balance) times, so 0 takes each utterance once
    # and 1 gives every speaker about as many as the largest (20 minutes of LJ Speech beside
    # hours of other voices). Coqui TTS's speaker-weighted sampler, made deterministic.
    speaker_balance: float = 0.0
    # With model.pron_head: a text file of further sentences (one a line) that no recording
    # speaks, `pron_rows` of them read by the phoneme head every training step (jtts.pron_text).
    pron_text: str | None = None
    pron_rows: int = 32
    prefetch: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        _at_least(self, "data", 1, "batch_frames", "max_frames", "num_buckets", "pron_rows")
        _at_least(self, "data", 0, "prefetch")
        _check(
            self.text_normalizer in NORMALIZERS,
            f"data.text_normalizer={self.text_normalizer!r} is not one of {', '.join(NORMALIZERS)}",
        )
        _check(
            0.0 <= self.speaker_balance <= 1.0,
            f"data.speaker_balance must be in [0, 1], got {self.speaker_balance}",
        )
        _check(
            0.0 <= self.val_fraction < 1.0,
            f"data.val_fraction must be in [0, 1), got {self.val_fraction}",
        )
        if self.bucket_sizes is not None:
            sizes = self.bucket_sizes
            _check(
                len(sizes) > 0 and sizes[0] > 0 and list(sizes) == sorted(set(sizes)),
                f"data.bucket_sizes must be positive and strictly increasing, got {list(sizes)}",
            )


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-4
    warmup_steps: int = 1000
    decay: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    clip_norm: float = 1.0  # 0 disables clipping
    grad_accum: int = 1
    codebook_weights: tuple[float, ...] | None = None  # per-codebook loss weights; None: equal
    z_loss: float = 0.0  # weight of mean(logsumexp(logits)^2); 0 disables
    # Exponential moving average of the weights, which evaluation, samples and inference use;
    # None: off. The decay warms up as min(ema_decay, (1 + step) / (10 + step)).
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        _check(self.lr > 0, f"optim.lr must be > 0, got {self.lr}")
        _check(
            self.ema_decay is None or 0.0 < self.ema_decay < 1.0,
            f"optim.ema_decay must be in (0, 1) or null, got {self.ema_decay}",
        )
        _at_least(self, "optim", 0, "warmup_steps", "weight_decay", "clip_norm", "z_loss")
        _at_least(self, "optim", 1, "grad_accum")
        _check(
            0.0 <= self.min_lr_ratio <= 1.0,
            f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}",
        )


@dataclasses.dataclass(frozen=True)
class AlignConfig:
    """Training-only aids that make cross-attention align text and audio (jtts.alignment).
    Sampling needs none of them: the prior is annealed away before training ends (a prior
    that stays, in sampling too, is the model's: `model.attention_prior`)."""

    prior: bool = False  # beta-binomial diagonal prior on cross-attention logits
    prior_scaling: float = 0.5  # the prior's a, b scale: smaller is wider
    prior_hold_steps: int = 1000  # full-strength prior until this step
    prior_end_step: int = 2000  # then annealed linearly to no prior at this step
    ctc_weight: float = 0.0  # forward-sum (CTC) loss on the attention; 0 disables
    # P(a decoder input step is replaced by PAD): the audio context becomes less reliable than
    # the text, so the model reads (demo: text gain 0.15 -> 1.55, greedy WER 0.22 -> 0.03-0.07).
    input_dropout: float = 0.6
    blank_logprob: float = -1.0  # the CTC blank's constant log-probability
    layers: tuple[int, ...] | None = None  # decoder layers with prior and loss; None: all
    pron_weight: float = 1.0  # the phoneme CTC loss's weight, for a model with pron_head

    def __post_init__(self) -> None:
        _check(self.prior_scaling > 0, f"align.prior_scaling must be > 0, got {self.prior_scaling}")
        _at_least(self, "align", 0, "prior_hold_steps", "ctc_weight", "pron_weight")
        _check(
            0.0 <= self.input_dropout < 1.0,
            f"align.input_dropout must be in [0, 1), got {self.input_dropout}",
        )
        _check(
            self.prior_end_step >= self.prior_hold_steps,
            f"align.prior_end_step={self.prior_end_step} is before "
            f"align.prior_hold_steps={self.prior_hold_steps}",
        )


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh axis sizes; exactly one axis may be -1 (fill with the remaining devices)."""

    data: int = -1
    fsdp: int = 1

    def __post_init__(self) -> None:
        sizes = (self.data, self.fsdp)
        _check(
            all(s == -1 or s > 0 for s in sizes) and sizes.count(-1) <= 1,
            f"train.mesh sizes must be positive or -1 (at most one), got {sizes}",
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 100_000
    seed: int = 0
    nonfinite: Literal["stop", "skip"] = "stop"  # on a NaN/Inf loss: stop the run or skip step
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    # A run or shipped model whose weights a new run starts from (jtts.warmstart): a voice
    # added to a trained reader, a fine-tune. Read once, at step 0; a resume never rereads it.
    init_from: str | None = None

    def __post_init__(self) -> None:
        _at_least(self, "train", 1, "steps")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    every: int = 1000
    keep: int = 3  # keep the last k checkpoints
    keep_best: bool = True  # additionally keep the one with the best validation loss
    async_save: bool = True

    def __post_init__(self) -> None:
        _at_least(self, "checkpoint", 1, "every", "keep")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    every: int = 1000
    batches: int = 20  # validation batches per evaluation
    num_samples: int = 4  # validation texts synthesised to RUN_DIR/samples
    sample_max_seconds: float = 10.0

    def __post_init__(self) -> None:
        _at_least(self, "eval", 1, "every", "batches")
        _at_least(self, "eval", 0, "num_samples")


@dataclasses.dataclass(frozen=True)
class LogConfig:
    every: int = 50
    tensorboard: bool = True

    def __post_init__(self) -> None:
        _at_least(self, "log", 1, "every")


# What guidance's null condition drops: every attribute (AudioCraft's way), or the text alone,
# the null rows keeping the speaker (on models/voices it reads as well and keeps less of the
# voice: models/README.md).
CFG_NULLS = ("all", "text")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    temperature: float = 1.0
    top_k: int = 0  # 0 disables
    top_p: float = 1.0  # 1 disables
    cfg_scale: float = 1.0  # 1: no guidance; >1 mixes in the null condition (opt-in)
    cfg_null: str = "all"  # what the null condition drops: "all" attributes, or the "text" alone
    length_scale: float = 1.0  # the predicted length times this (models with a prior)
    follow: bool = False  # weight cross-attention around the text position reached (MagpieTTS)
    max_seconds: float = 20.0
    # The voice of a model with a speaker table when neither --speaker nor a voice prompt
    # chooses one (Piper's default speaker id); None: the sampler asks for one.
    speaker: str | None = None

    def __post_init__(self) -> None:
        _at_least(self, "sample", 0, "temperature", "top_k")
        _check(0.0 < self.top_p <= 1.0, f"sample.top_p must be in (0, 1], got {self.top_p}")
        _check(
            self.cfg_null in CFG_NULLS,
            f"sample.cfg_null must be one of {', '.join(CFG_NULLS)}, got {self.cfg_null!r}",
        )
        _check(self.max_seconds > 0, f"sample.max_seconds must be > 0, got {self.max_seconds}")
        _check(self.length_scale > 0, f"sample.length_scale must be > 0, got {self.length_scale}")


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = "default"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    align: AlignConfig = dataclasses.field(default_factory=AlignConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    sample: SampleConfig = dataclasses.field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        _check(
            self.data.max_frames <= self.model.max_frames,
            f"data.max_frames={self.data.max_frames} exceeds "
            f"model.max_frames={self.model.max_frames}",
        )
        _check(
            not (self.align.prior and self.model.attention_prior is not None),
            "align.prior (annealed) and model.attention_prior (kept) are two priors: choose one",
        )
        _check(
            self.sample.length_scale == 1.0 or self.model.attention_prior is not None,
            f"sample.length_scale={self.sample.length_scale:g} needs model.attention_prior: "
            "without the prior nothing sets the length",
        )
        layers = self.align.layers or ()
        _check(
            all(0 <= i < self.model.dec_layers for i in layers),
            f"align.layers={list(layers)} must name decoder layers 0..{self.model.dec_layers - 1}",
        )
        weights = self.optim.codebook_weights
        _check(
            weights is None or len(weights) == self.model.n_codebooks,
            f"optim.codebook_weights has {0 if weights is None else len(weights)} entries, "
            f"model.n_codebooks={self.model.n_codebooks}",
        )
        _check(
            self.data.pron_text is None or self.model.pron_head,
            f"data.pron_text={self.data.pron_text!r} needs model.pron_head=true (its rows train "
            "only the phoneme head)",
        )
        self._check_default_speaker()

    @property
    def codebook_weights(self) -> tuple[float, ...]:
        """Each codebook's loss weight: `optim.codebook_weights`, or 1 each when unset."""
        return self.optim.codebook_weights or (1.0,) * self.model.n_codebooks

    def _check_default_speaker(self) -> None:
        """`sample.speaker` names a speaker of the table (once the store has filled it)."""
        name = self.sample.speaker
        if name is None:
            return
        table = next((c for c in self.model.conditions if c.name == "speaker"), None)
        _check(table is not None, f"sample.speaker={name!r}: the model has no speaker table")
        _check(
            not table.values or name in table.values,
            f"sample.speaker={name!r} is not in the speaker table: {', '.join(table.values)}",
        )


def _valid_keys(cls: type, where: str) -> str:
    names = ", ".join(f.name for f in dataclasses.fields(cls))
    return f"valid keys of {where or 'the config'}: {names}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, section: tuple[type, str]) -> Any:
    """Returns `value` converted to annotation `tp`, or raises ConfigError naming `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def fail() -> typing.NoReturn:
        raise ConfigError(
            f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__}); "
            + _valid_keys(*section)
        )

    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            fail()
        return _build(tp, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, section)
            except ConfigError:
                pass
        fail()
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            fail()
        return tuple(_coerce(v, args[0], key, section) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if tp is float:
        # YAML 1.1 reads `3e-4` (no dot) as a string, so numeric strings are accepted here.
        if isinstance(value, bool):
            fail()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                fail()
        fail()
    if tp is str:
        if not isinstance(value, str):
            fail()
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _build(cls: type, d: dict[str, Any], where: str = "") -> Any:
    """Builds dataclass `cls` from a (possibly partial) dict; missing keys take defaults."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        key = f"{where}.{k}" if where else str(k)
        if k not in names:
            raise ConfigError(f"unknown key {key!r}; " + _valid_keys(cls, where))
        kwargs[k] = _coerce(v, hints[k], key, (cls, where))
    return cls(**kwargs)


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) that round-trips through JSON and YAML."""
    return _to_plain(cfg)


def config_from_dict(d: dict[str, Any]) -> Config:
    """Builds and validates a Config; sections or keys that are absent take their defaults."""
    return _build(Config, d)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own message is a drawing)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or type(e).__name__
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _parse_override(item: str) -> tuple[list[str], Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: cannot parse value ({_yaml_problem(e)})") from None
    return key.strip().split("."), value


def _set_path(d: dict[str, Any], path: list[str], value: Any) -> None:
    cls: type = Config
    node = d
    for i, part in enumerate(path):
        where = ".".join(path[:i])
        names = {f.name: f for f in dataclasses.fields(cls)}
        if part not in names:
            raise ConfigError(
                f"unknown key {'.'.join(path[: i + 1])!r}; " + _valid_keys(cls, where)
            )
        if i == len(path) - 1:
            node[part] = value
            return
        cls = typing.get_type_hints(cls)[part]
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"{'.'.join(path[: i + 1])!r} is a value, not a section")
        node = node.setdefault(part, {})


def apply_overrides(cfg: Config, overrides: typing.Iterable[str]) -> Config:
    """Returns `cfg` with `a.b=v` overrides applied; values are parsed as YAML and type-checked."""
    d = config_to_dict(cfg)
    for item in overrides:
        path, value = _parse_override(item)
        _set_path(d, path, value)
    return config_from_dict(d)


def load_config(path: str | Path, overrides: typing.Iterable[str] = ()) -> Config:
    """Loads a YAML (or JSON, e.g. a run's saved `RunDir.config`) config and applies overrides.

    `name` defaults to the file stem when the file does not set it.
    """
    path = Path(path)
    try:
        d = yaml.safe_load(read_text(path)) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror})") from None
    except EncodingError as e:
        raise ConfigError(str(e)) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    d.setdefault("name", path.stem)
    return apply_overrides(config_from_dict(d), overrides)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")


def config_diff(a: Any, b: Any, ignore: typing.Iterable[str] = ()) -> list[str]:
    """Dotted names of fields that differ between two configs (or two sections) of one type.

    E.g. `config_diff(ckpt_cfg.model, cfg.model, ignore=MODEL_RUNTIME_FIELDS)` lists the model
    fields that make a checkpoint incompatible.
    """
    if type(a) is not type(b):
        raise TypeError(f"cannot diff {type(a).__name__} with {type(b).__name__}")
    skip = set(ignore)
    out = []
    for f in dataclasses.fields(a):
        if f.name in skip:
            continue
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(va):
            out += [f"{f.name}.{sub}" for sub in config_diff(va, vb)]
        elif va != vb:
            out.append(f.name)
    return out
