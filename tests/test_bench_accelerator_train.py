"""bench/accelerator_train.py on the CPU: pack a tiny store, train until the time limit stops
it, export in parts, join them back; and the refusals that keep a device call from wasting
its minutes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic import make_store, subprocess_env

from codec_bridge.format import file_sha256
from jtts import export, shipped

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = [sys.executable, str(ROOT / "bench" / "accelerator_train.py")]
TINY = ["configs/tiny.yaml", "--set", "train.steps=1000000", "eval.every=1000"]
TINY += ["checkpoint.every=1000", "data.batch_frames=512"]


def _script(*args, env=None):
    cmd = [*SCRIPT, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or subprocess_env())


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A tiny store whose codec is a file of the repository, packed into its own carry."""
    tmp = tmp_path_factory.mktemp("pack")
    store = make_store(tmp / "store", 24, frames=(20, 40))
    codec = ROOT / "codecs" / "voices_codec.pt"
    meta = json.loads((store / "meta.json").read_text())
    meta["weights"] = {"kind": "file", "path": str(codec), "sha256": file_sha256(codec)}
    (store / "meta.json").write_text(json.dumps(meta))
    carry = tmp / "carry"
    proc = _script(
        "pack", "--store", store, "--carry", carry, "--max-bytes", 2**40, "--config", *TINY
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["codec"] == "codecs/voices_codec.pt" and len(plan["probes"]) == 2
    assert sorted(p.name for p in carry.iterdir()) == [
        "plan.json",
        "store.tar.xz",
        "tokenizers.tar.xz",
    ]
    return carry


@pytest.mark.slow
def test_a_stopped_run_is_exported_in_parts_that_join_to_the_run(packed, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["train", "--out", out, "--seconds", 45, "--carry", packed, "--work", work]
    proc = _script(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit"] == 75  # the time limit's SIGTERM, after a checkpoint was saved
    assert summary["step"] >= 1 and summary["parts"] == ["params.msgpack.part00"]
    assert (out / "metrics.jsonl").is_file() and (out / "config.json").is_file()
    assert not (out / "model" / shipped.CODEC).exists()  # the codec stays on this side
    proc = _script("join", "--out", out, "--model", tmp_path / "model")
    assert proc.returncode == 0, proc.stderr
    # An export made here from the same run: the joined folder is the same files.
    assert export.main(["--workdir", str(work / "run"), "--out", str(tmp_path / "direct")]) == 0
    for name in (shipped.PARAMS, shipped.CODEC):
        assert file_sha256(tmp_path / "model" / name) == file_sha256(tmp_path / "direct" / name)
    assert shipped.read(tmp_path / "model")[2] == summary["step"]
    proc = _script("join", "--out", out, "--model", tmp_path / "model")  # never over a model
    assert proc.returncode == 2 and "exists; join into a new folder" in proc.stderr
    part = out / "model" / "params.msgpack.part00"
    part.write_bytes(b"x" + part.read_bytes()[1:])  # a part damaged on the way back
    proc = _script("join", "--out", out, "--model", tmp_path / "damaged")
    assert proc.returncode == 2 and "sha256 differs" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "damaged").exists() and not (tmp_path / "damaged.joining").exists()


def test_text_encoded_otherwise_is_refused_before_training(packed, tmp_path):
    carry = tmp_path / "carry"
    carry.mkdir()
    for f in packed.iterdir():
        (carry / f.name).symlink_to(f)
    plan = json.loads((packed / "plan.json").read_text())
    (carry / "plan.json").unlink()
    (carry / "plan.json").write_text(json.dumps({**plan, "probes": [[1, 2], [3]]}))
    args = ["train", "--out", tmp_path / "out", "--seconds", 5, "--carry", carry]
    proc = _script(*args, "--work", tmp_path / "work")
    assert proc.returncode == 2
    assert (
        proc.stderr == "error: this machine encodes text into other ids than the packing one did\n"
    )
    assert not (tmp_path / "work" / "run").exists()


def test_a_codec_outside_the_repository_cannot_travel(tmp_path):
    store = make_store(tmp_path / "store", 2)
    meta = json.loads((store / "meta.json").read_text())
    meta["weights"] = {"kind": "file", "path": str(tmp_path / "codec.pt")}
    (store / "meta.json").write_text(json.dumps(meta))
    proc = _script("pack", "--store", store, "--carry", tmp_path / "carry", "--config", *TINY)
    assert proc.returncode == 2
    assert "must be in the repository to travel" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "carry").exists()


def test_a_carry_over_the_call_limit_is_refused_and_the_old_one_kept(packed, tmp_path):
    carry = tmp_path / "carry"
    carry.mkdir()
    (carry / "plan.json").write_text("{}")
    store = tmp_path / "store"
    make_store(store, 2)
    proc = _script(
        "pack", "--store", store, "--carry", carry, "--max-bytes", 1000, "--config", *TINY
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "over 1000" in proc.stderr
    assert [p.name for p in carry.iterdir()] == ["plan.json"]
    assert not (tmp_path / "carry.new").exists()
