"""Reporting: generated samples are written under the run's samples folder, named safely."""

import json

import jax
import numpy as np
from synthetic import (
    trainer_config,
    xla_cache,  # noqa: F401 (autouse fixture)
)

from codec_bridge.format import CodeStore, ShardWriter, file_stem, init_store, make_meta, split_of
from jtts.rundir import RunDir
from jtts.trainer import train


def odd_id_store(path, n=24):
    """A store whose ids are paths (folders, '..'), beside a plain id they would flatten to."""
    meta = make_meta(
        codec="synthetic",
        sample_rate=24000,
        frame_rate=75.0,
        n_codebooks=8,
        codebook_size=1024,
        bandwidth=6.0,
        weights={"kind": "untrained", "seed": 0},
    )
    init_store(path, meta)
    ids, i = ["spk_sub_utt1"], 0
    while len(ids) < n:
        candidate = f"spk/sub/utt{i}" if i % 3 else f"../../escape{i}"
        if split_of(candidate, 0.2) == "val" or len(ids) < n - 4:
            ids.append(candidate)
        i += 1
    rng = np.random.default_rng(0)
    with ShardWriter(path, "a") as w:
        for uid in ids:
            w.add(uid, rng.integers(0, 1024, (8, 40)), text=f"utterance {uid}", duration=0.5)
    return path


def test_samples_of_ids_with_slashes_stay_in_their_folder(tmp_path):
    store = odd_id_store(tmp_path / "store")
    val = [u for u in CodeStore.open(store).ids if split_of(u, 0.2) == "val"]
    assert any("/" in u for u in val) and any(".." in u for u in val)
    cfg = trainer_config("train.steps=4", "eval.num_samples=4")
    assert train(cfg, store, tmp_path / "run", devices=jax.devices()[:1], progress=False) == 0
    files = sorted(RunDir(tmp_path / "run").samples(4).iterdir())
    assert len(files) == 8 and all(p.suffix in (".npy", ".json") for p in files)
    ids = [json.loads(p.read_text())["id"] for p in files if p.suffix == ".json"]
    assert sorted(ids) == sorted(val[:4])  # the id itself is kept in the sidecar
    assert {p.stem for p in files} == {file_stem(u) for u in ids}
    assert not list(tmp_path.glob("escape*")) and not list(tmp_path.glob("run/escape*"))
