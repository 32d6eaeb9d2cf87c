"""Config loading, `--set` overrides, type errors that name the key, JSON round trip."""

import json
from pathlib import Path

import pytest
import yaml

from jtts.config import (
    MODEL_RUNTIME_FIELDS,
    Config,
    ConfigError,
    apply_overrides,
    config_diff,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NAMES = ["tiny", "small", "base", "large"]


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_yaml_loads_and_lists_only_what_differs_from_the_defaults(name):
    """A YAML is the dataclass defaults plus its own choices: a restated default would hide
    which choices are the config's (the resolved config is saved with every run)."""
    path = CONFIGS / f"{name}.yaml"
    cfg = load_config(path)
    assert cfg.name == name
    raw, default = yaml.safe_load(path.read_text()), config_to_dict(Config())
    for section, values in raw.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, dict):
                    for sub, v in value.items():
                        assert default[section][key][sub] != v, f"{section}.{key}.{sub}"
                else:
                    assert default[section][key] != value, f"{section}.{key}"


def test_stable_keys_exist():
    cfg = apply_overrides(
        Config(),
        [
            "train.steps=7",
            "train.seed=3",
            "optim.lr=1e-3",  # YAML 1.1 reads this as a string; float fields accept it
            "data.batch_frames=4096",
            "data.val_fraction=0",
            "checkpoint.every=2",
            "eval.every=2",
            "log.every=1",
        ],
    )
    assert (cfg.train.steps, cfg.train.seed, cfg.optim.lr) == (7, 3, 1e-3)
    assert (cfg.data.batch_frames, cfg.data.val_fraction) == (4096, 0.0)
    assert isinstance(cfg.data.val_fraction, float)
    assert (cfg.checkpoint.every, cfg.eval.every, cfg.log.every) == (2, 2, 1)


def test_nested_tuple_and_optional_overrides():
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [
            "train.mesh.fsdp=2",
            "optim.codebook_weights=[2, 1, 1, 1, 1, 1, 1, 0.5]",
            "model.head_dim=32",
            "data.bucket_sizes=[100, 200, 400]",
            "log.tensorboard=true",
        ],
    )
    assert cfg.train.mesh.fsdp == 2 and cfg.train.mesh.data == -1
    assert cfg.optim.codebook_weights == (2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5)
    assert cfg.codebook_weights == cfg.optim.codebook_weights
    assert load_config(CONFIGS / "tiny.yaml").codebook_weights == (1.0,) * 8  # unset: equal
    assert cfg.model.resolved_head_dim == 32
    assert cfg.data.bucket_sizes == (100, 200, 400)
    assert apply_overrides(cfg, ["model.head_dim=null"]).model.head_dim is None


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.steps=1.5", "train.steps: expected int, got 1.5"),
        ("train.steps=true", "train.steps: expected int"),
        ("log.tensorboard=3", "log.tensorboard: expected bool"),
        ("optim.lr=fast", "optim.lr: expected float, got 'fast'"),
        ("optim.codebook_weights=[1, x]", "optim.codebook_weights"),
        ("model.mlp=relu", "expected one of ['swiglu', 'gelu']"),
        ("train.nonfinite=ignore", "expected one of ['stop', 'skip']"),
    ],
)
def test_wrong_type_names_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), [override])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_wrong_type_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys of train: steps, seed, nonfinite, mesh"):
        apply_overrides(Config(), ["train.steps=many"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("optim.lrr=1", "unknown key 'optim.lrr'; valid keys of optim: lr, warmup_steps"),
        ("optimizer.lr=1", "unknown key 'optimizer'; valid keys of the config: name, model"),
        ("train.mesh.model=2", "unknown key 'train.mesh.model'; valid keys of train.mesh: data"),
        ("train.steps.x=1", "'train.steps' is a value, not a section"),
        ("train.steps", "not of the form section.key=value"),
    ],
)
def test_unknown_key_lists_valid_keys(override, fragment):
    with pytest.raises(ConfigError) as err:
        apply_overrides(Config(), [override])
    assert fragment in str(err.value)


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  d_modle: 64\n")
    with pytest.raises(ConfigError, match="unknown key 'model.d_modle'; valid keys of model"):
        load_config(path)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("data.max_frames=5000", "exceeds model.max_frames"),
        ("optim.codebook_weights=[1, 1]", "model.n_codebooks=8"),
        ("model.n_heads=3", "not divisible"),
        ("model.n_kv_heads=3", "model.n_kv_heads=3 must divide model.n_heads=4"),
        ("model.n_kv_heads=0", "model.n_kv_heads=0 must divide"),
        ("data.val_fraction=1", "data.val_fraction must be in [0, 1)"),
        ("data.speaker_balance=1.5", "data.speaker_balance must be in [0, 1]"),
        ("train.mesh.fsdp=-1", "at most one"),
        ("sample.length_scale=0", "sample.length_scale must be > 0"),
    ],
)
def test_invalid_values(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "tiny.yaml", [override])
    assert fragment in str(err.value)


def test_length_scale_needs_the_models_prior():
    """Every config carries the prior; turned off, nothing sets the length a scale would scale."""
    assert (
        load_config(CONFIGS / "tiny.yaml", ["sample.length_scale=1.1"]).sample.length_scale == 1.1
    )
    with pytest.raises(ConfigError, match="sample.length_scale=1.1 needs model.attention_prior"):
        load_config(
            CONFIGS / "tiny.yaml", ["model.attention_prior=null", "sample.length_scale=1.1"]
        )


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_dict_and_json(name, tmp_path):
    cfg = load_config(CONFIGS / f"{name}.yaml", ["optim.codebook_weights=[1,1,1,1,1,1,1,1]"])
    assert config_from_dict(config_to_dict(cfg)) == cfg
    path = tmp_path / "config.json"
    save_config(cfg, path)
    assert json.loads(path.read_text()) == config_to_dict(cfg)
    assert load_config(path) == cfg


def test_config_diff():
    a = load_config(CONFIGS / "tiny.yaml")
    b = apply_overrides(a, ["model.d_model=128", "model.dtype=bfloat16", "train.mesh.data=2"])
    assert config_diff(a.model, b.model) == ["d_model", "dtype"]
    assert config_diff(a.model, b.model, ignore=MODEL_RUNTIME_FIELDS) == ["d_model"]
    assert config_diff(a, b) == ["model.d_model", "model.dtype", "train.mesh.data"]
    assert config_diff(a, a) == []


@pytest.mark.parametrize(
    "text, fragment",
    [
        (None, "cannot read the config (No such file or directory)"),
        (b"model: [d_model: 64\n  oops: {\n", "not valid YAML ("),
        (b"name: caf\xe9\n", ":1: not UTF-8 (byte 0xe9)"),
    ],
    ids=["missing", "garbage", "latin1"],
)
def test_unreadable_config_file_is_one_line_naming_it(tmp_path, capsys, text, fragment):
    from jtts.train import main

    path = tmp_path / "run.yaml"
    if text is not None:
        path.write_bytes(text)
    args = ["--config", str(path), "--data", str(tmp_path), "--workdir", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"jtts.train: error: {path}")
    assert fragment in err


def test_unparsable_override_value_is_one_line():
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "tiny.yaml", ["data.bucket_sizes=[96"])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("override 'data.bucket_sizes=[96': cannot parse")


def test_an_unknown_text_normalizer_fails_at_load():
    with pytest.raises(ConfigError, match="data.text_normalizer='spoken' is not one of"):
        apply_overrides(Config(), ["data.text_normalizer=spoken"])
    assert apply_overrides(Config(), ["data.text_normalizer=spoken_english"])
