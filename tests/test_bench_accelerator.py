"""bench/accelerator.py: the prepared GPU check runs end to end on the CPU (its dry run)."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import accelerator  # noqa: E402


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("acc")
    cmd = [sys.executable, "bench/accelerator.py", "--dry-run", "--out", str(tmp / "a.json")]
    out = subprocess.run(
        cmd + ["--profile", str(tmp)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert json.loads((tmp / "a.json").read_text()) == result
    return result, tmp


@pytest.mark.slow
def test_every_part_measures(dry_run):
    r, _ = dry_run
    for part in ("extract", "train_base", "train_small", "decode"):
        assert "error" not in r[part], r[part]
    ext = r["extract"]
    assert set(ext["xrt_by_batch_seconds"]) == {str(b) for b in accelerator.DRY.batch_seconds}
    assert ext["xrt"] == max(ext["xrt_by_batch_seconds"].values()) > 0
    assert ext["audio_s"] == round(accelerator.DRY.clips * accelerator.DRY.clip_s)
    for part in ("train_base", "train_small"):
        t = r[part]
        b = t["batch"]
        assert b["rows"] * b["frames"] * 8 / t["step_s"] == pytest.approx(t["tokens_per_s"], 1e-3)
        assert t["tflops_per_step"] > 0 and t["step_s"] <= t["median_step_s"]
        assert t["mfu"] is None  # no bf16 peak is known for a CPU
    assert r["train_base"]["config"] == "tiny model.dtype=bfloat16"
    d = r["decode"]
    for b in accelerator.DRY.decode_batches:
        row = d[f"batch{b}"]
        assert row["rtf"] * row["frames_per_s"] == pytest.approx(75.0, rel=0.02)  # 75 frames/s
        assert row["steps"] >= accelerator.DRY.decode_frames  # EOS disabled: every frame decoded
    assert d["largest_batch"] == accelerator.DRY.decode_batches[-1]
    assert r["targets"]["extract_ge_1000x_real_time"]["value"] == ext["xrt"]
    assert r["targets"]["base_mfu_ge_0.40"]["met"] is None


@pytest.mark.slow
def test_profiles_are_jax_traces(dry_run):
    _, tmp = dry_run
    for name in ("profile_train_base", "profile_decode"):
        with tarfile.open(tmp / f"{name}.tar.gz") as tar:
            assert any(n.endswith(".xplane.pb") for n in tar.getnames()), tar.getnames()


def test_a_part_past_its_limit_is_reported_not_fatal():
    assert accelerator.run_part("decode", "dry", None, 1) == {"error": "over its 1 s limit"}


def test_targets_judge_each_figure():
    r = {
        "train_base": {"mfu": 0.45},
        "decode": {"largest_over_batch1_audio_per_s": 12.0},
        "extract": {"error": "over its 100 s limit"},
    }
    t = accelerator.targets(r)
    assert t["base_mfu_ge_0.40"]["met"] is True
    assert t["decode_b64_over_b1_ge_20x"]["met"] is False
    assert t["extract_ge_1000x_real_time"] == {"value": None, "target": 1000.0, "met": None}


def test_the_shell_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "accelerator.sh")]).returncode == 0
