"""Synthetic code stores and batches for the training tests (real LJ transcripts, made-up codes).

`structured=True` gives codes a model can learn from context: each codebook row is an
arithmetic progression mod C whose stride depends on the utterance, so after two frames the
rest is predictable. Random codes are for everything that does not need learning.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED_DATA
from jax.experimental.compilation_cache import compilation_cache

from codec_bridge.format import ShardWriter, init_store, make_meta
from jtts.config import apply_overrides, load_config

# One persistent XLA cache for the in-process tests and the `python -m jtts.train` subprocesses
# they start: each distinct program compiles once per machine instead of once per test.
XLA_CACHE = Path(tempfile.gettempdir()) / "jtts-test-xla"


@pytest.fixture(scope="module", autouse=True)
def xla_cache():
    """Uses XLA_CACHE for the importing test module only, then restores the setting."""
    previous = jax.config.jax_compilation_cache_dir
    compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", str(XLA_CACHE))
    yield
    compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", previous)


# Config overrides and batch shape of the unit tests of the step, mesh and checkpoint: one
# program, compiled once per machine for all of them.
UNIT_OVERRIDES = (
    "model.cond_drop_prob=0.5",
    "optim.z_loss=0.001",
    "optim.codebook_weights=[2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]",
)
UNIT_SHAPE = (8, 24, 16)  # rows, frames, text tokens
# The batch shape of the trainer tests (test_trainer, test_checkpoint, test_workdir): one
# compiled train program for all of them.
TRAINER_SHAPE = ("data.bucket_sizes=[96]", "data.batch_frames=384")
# The trainer tests' runs (test_trainer, test_reporting): 8 steps, evaluated and saved every 4.
TRAINER_RUN = (
    "train.steps=8",
    *TRAINER_SHAPE,
    "data.val_fraction=0.2",
    "eval.every=4",
    "eval.num_samples=1",
    "eval.sample_max_seconds=0.2",
    "checkpoint.every=4",
    "log.every=1",
    "log.tensorboard=true",
)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def unit_config(*overrides: str):
    """configs/tiny.yaml with UNIT_OVERRIDES, then `overrides`."""
    return apply_overrides(load_config(CONFIGS / "tiny.yaml"), [*UNIT_OVERRIDES, *overrides])


def trainer_config(*overrides: str):
    """configs/tiny.yaml with TRAINER_RUN, then `overrides`."""
    return apply_overrides(load_config(CONFIGS / "tiny.yaml"), [*TRAINER_RUN, *overrides])


FALLBACK = [
    "Printing, in the only sense with which we are at present concerned.",
    "In being comparatively modern.",
    "For although the Chinese took impressions from wood blocks engraved in relief.",
    "The earliest book printed with movable types, the Gutenberg, or forty-two line Bible.",
]


def transcripts(n: int) -> list[tuple[str, str]]:
    """(id, text) pairs: LJ Speech metadata when present, else repeated fallback sentences."""
    meta = SHARED_DATA / "ljspeech_lj001" / "metadata.csv"
    if meta.exists():
        rows = [line.split("|") for line in meta.read_text(encoding="utf-8").splitlines()]
        pairs = [(r[0], r[1]) for r in rows if len(r) >= 2]
    else:
        pairs = [(f"FB-{i:04d}", t) for i, t in enumerate(FALLBACK)]
    out = [pairs[i % len(pairs)] for i in range(n)]
    return [
        (f"{uid}-{i // len(pairs)}" if i >= len(pairs) else uid, t)
        for i, (uid, t) in enumerate(out)
    ]


def _init_synthetic(path: Path, n_codebooks: int, codebook_size: int, seed: int) -> None:
    meta = make_meta(
        codec="synthetic",
        sample_rate=24000,
        frame_rate=75.0,
        n_codebooks=n_codebooks,
        codebook_size=codebook_size,
        bandwidth=6.0,
        weights={"kind": "untrained", "seed": seed},
    )
    init_store(path, meta)


def make_store(
    path: Path,
    n: int,
    *,
    n_codebooks: int = 8,
    codebook_size: int = 1024,
    frames: tuple[int, int] = (20, 120),
    structured: bool = False,
    seed: int = 0,
    shards: int = 2,
    speakers: Sequence[str] | None = None,
) -> Path:
    """A store of `n` utterances with lengths drawn from `frames` (inclusive range), spoken by
    `speakers[i]` (none by default)."""
    rng = np.random.default_rng(seed)
    _init_synthetic(path, n_codebooks, codebook_size, seed)
    items = transcripts(n)
    per_shard = -(-n // shards)
    for s in range(shards):
        with ShardWriter(path, f"shard-{s:03d}") as w:
            for i, (uid, text) in enumerate(items[s * per_shard : (s + 1) * per_shard]):
                speaker = None if speakers is None else speakers[s * per_shard + i]
                t = int(rng.integers(frames[0], frames[1] + 1))
                if structured:
                    stride = rng.integers(1, 17, (n_codebooks, 1))
                    start = rng.integers(0, codebook_size, (n_codebooks, 1))
                    codes = (start + stride * np.arange(t)[None, :]) % codebook_size
                else:
                    codes = rng.integers(0, codebook_size, (n_codebooks, t))
                w.add(uid, codes, text=text, speaker=speaker, duration=t / 75.0)
    return path


WORDS = ("red", "blue", "green", "old", "new", "big", "small", "cat", "dog", "box", "sun", "tree")


def make_spoken_store(
    path: Path,
    n: int,
    *,
    n_codebooks: int = 8,
    codebook_size: int = 1024,
    seed: int = 0,
) -> Path:
    """A store where the text determines the codes: each of 12 words has its own fixed codes
    (4 to 8 frames, every codebook), and an utterance of 3 to 6 random words is their codes
    in order. Frames inside a word follow from the ones before; which word comes next only
    the text says, so a model that reads gains about ln(12) nats at every word onset."""
    rng = np.random.default_rng(seed)
    sounds = [rng.integers(0, codebook_size, (n_codebooks, int(rng.integers(4, 9)))) for _ in WORDS]
    _init_synthetic(path, n_codebooks, codebook_size, seed)
    with ShardWriter(path, "shard-000") as w:
        for i in range(n):
            words = rng.integers(0, len(WORDS), int(rng.integers(3, 7)))
            codes = np.concatenate([sounds[j] for j in words], axis=1)
            text = " ".join(WORDS[j] for j in words)
            w.add(f"SYN-{i:04d}", codes, text=text, duration=codes.shape[1] / 75.0)
    return path


def subprocess_env(devices: int = 1, **extra: str) -> dict[str, str]:
    """Environment for a `python -m jtts.train` child: CPU, `devices` fake devices, shared cache."""
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_COMPILATION_CACHE_DIR=str(XLA_CACHE),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def random_batch(
    rows: int, frames: int, text_len: int, *, n_codebooks: int = 8, seed: int = 0
) -> dict[str, np.ndarray]:
    """A host batch like jtts.data's: varied lengths, one cropped row, one filler row."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(frames // 2, frames + 1, rows).astype(np.int32)
    text_lens = rng.integers(2, text_len + 1, rows)
    valid = np.ones(rows, bool)
    valid[-1] = False
    has_eos = np.ones(rows, bool)
    has_eos[0] = False
    codes = rng.integers(0, 1024, (rows, n_codebooks, frames)).astype(np.int32)
    codes *= np.arange(frames)[None, None, :] < lengths[:, None, None]
    from jtts.conditioning import Cond

    text = rng.integers(0, 50000, (rows, text_len)).astype(np.int32)
    return {
        "cond": Cond.of_text(text, np.arange(text_len)[None, :] < text_lens[:, None]),
        "codes": codes,
        "lengths": lengths,
        "has_eos": has_eos,
        "valid": valid,
    }


PRON = ("model.pron_head=true", "model.text_units=bytes")  # a model with the phoneme head


def with_phones(
    host: dict[str, np.ndarray], seed: int = 0, text_rows: int = 0
) -> dict[str, np.ndarray]:
    """`host` (a `random_batch`) with random phoneme targets for `PRON`: each valid row half
    as many as its text positions, row 1's flagged as not fitting, as jtts.data flags them;
    with `text_rows`, that many text-only rows ("pron_text", as `jtts.pron_text` makes them)."""
    from jtts.pronounce import N_SYMBOLS

    rng = np.random.default_rng(seed)
    lens = host["cond"].text_mask_BxS.sum(axis=1) // 2
    phones = rng.integers(1, N_SYMBOLS, host["cond"].text_mask_BxS.shape).astype(np.int32)
    phones *= np.arange(phones.shape[1])[None, :] < lens[:, None]
    ok = host["valid"] & (lens > 0)
    ok[1] = False
    phones[1] = 0
    out = {**host, "phones": phones, "phones_ok": ok}
    if text_rows:
        s = phones.shape[1]
        lens = rng.integers(4, s + 1, text_rows)
        mask = np.arange(s)[None, :] < lens[:, None]
        ids = rng.integers(1, 256, (text_rows, s)).astype(np.int32) * mask
        text_phones = rng.integers(1, N_SYMBOLS, (text_rows, s)).astype(np.int32)
        text_phones *= np.arange(s)[None, :] < (lens // 2)[:, None]
        ok = np.ones(text_rows, bool)
        out["pron_text"] = {"ids": ids, "mask": mask, "phones": text_phones, "phones_ok": ok}
    return out


def train_setup(cfg, devices=None):
    """(mesh, TrainStep, fresh state) for `cfg` on `devices` (default: all)."""
    from jtts.mesh import make_mesh, state_shardings
    from jtts.optim import abstract_model, abstract_state, init_state, make_optimizer
    from jtts.train_step import TrainStep

    mesh = make_mesh(cfg.train.mesh, devices)
    tx = make_optimizer(cfg.optim)
    graphdef, _ = abstract_model(cfg)
    shardings = state_shardings(abstract_state(cfg, tx), mesh)
    return mesh, TrainStep(cfg, graphdef, tx, mesh, shardings), init_state(cfg, tx, shardings)


def device_batch(mesh, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    from jtts.mesh import batch_sharding

    return jax.tree.map(lambda v: jax.device_put(v, batch_sharding(mesh)), batch)


def train_command(config: Path, store: Path, workdir: Path, *overrides: str) -> list[str]:
    import sys

    cmd = [sys.executable, "-m", "jtts.train", "--config", str(config), "--data", str(store)]
    return [*cmd, "--workdir", str(workdir), *(a for o in overrides for a in ("--set", o))]


def free_port() -> int:
    """A TCP port on localhost that nothing listens on, for a jax.distributed coordinator."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(
    command: list[str], n: int = 2, devices: int = 1
) -> list[subprocess.CompletedProcess]:
    """`command` (a `jtts.train` command) as `n` processes of one run on localhost, each
    finished with its output (stdout and stderr together) in `.stdout`."""
    port = free_port()
    procs = [
        subprocess.Popen(
            [
                *command,
                *("--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n)),
                *("--process-id", str(i)),
            ],
            env=subprocess_env(devices=devices),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    return [
        subprocess.CompletedProcess(p.args, p.returncode, out)
        for p, out in zip(procs, outs, strict=True)
    ]


SPEAKERS = ("alice", "bob")


def make_two_speaker_store(path: Path, texts: int = 2, *, codebook_size: int = 1024) -> Path:
    """Each of `texts` sentences said by both `SPEAKERS` in as many frames: structured codes
    (see `make_store`), bob's those of alice shifted by half the codebook, so only the speaker
    tells which codes a text gets."""
    rng = np.random.default_rng(0)
    _init_synthetic(path, 8, codebook_size, 0)
    with ShardWriter(path, "shard-000") as w:
        for uid, text in transcripts(texts):
            t = int(rng.integers(40, 61))
            stride, start = rng.integers(1, 17, (8, 1)), rng.integers(0, codebook_size, (8, 1))
            codes = (start + stride * np.arange(t)[None, :]) % codebook_size
            for s, speaker in enumerate(SPEAKERS):
                shifted = (codes + s * codebook_size // 2) % codebook_size
                w.add(f"{uid}-{speaker}", shifted, text=text, speaker=speaker, duration=t / 75.0)
    return path


def silent_manifest(path: Path, clips: Sequence[tuple[str, float]]) -> Path:
    """A manifest (path,text,speaker,id) beside it of silent 8 kHz clips, one per (speaker,
    seconds) of `clips`: clip i is `i.wav` with id `u{i}`, for benches that choose by length."""
    rows = ["path,text,speaker,id"]
    for i, (voice, seconds) in enumerate(clips):
        sf.write(path.parent / f"{i}.wav", np.zeros(int(seconds * 8000)), 8000)
        rows.append(f"{i}.wav,Text {i}.,{voice},u{i}")
    path.write_text("\n".join(rows) + "\n")
    return path
