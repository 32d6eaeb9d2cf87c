"""Host-side metrics: unigram baseline, MFU table, JSON lines with resume cut, TB, plot."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from jtts.metrics import (
    MetricsLogger,
    flatten,
    mfu,
    peak_flops,
    plot_losses,
    read_jsonl,
    unigram_entropy,
)
from jtts.rundir import RunDir


def device(kind, platform="gpu"):
    return SimpleNamespace(device_kind=kind, platform=platform)


def test_unigram_entropy_per_codebook():
    counts = np.zeros((3, 5), np.int64)
    counts[0] = 7  # uniform over 5
    counts[1, 2] = 9  # a single code
    counts[2, :2] = [1, 3]
    h = unigram_entropy(counts)
    np.testing.assert_allclose(h[0], np.log(5))
    assert h[1] == 0
    np.testing.assert_allclose(h[2], -(0.25 * np.log(0.25) + 0.75 * np.log(0.75)))


def test_flatten_names_codebooks():
    out = flatten("train", {"loss": np.float32(2.0), "loss_cb": np.array([1.0, 3.0]), "mfu": None})
    assert out == {
        "train/loss": 2.0,
        "train/loss_cb0": 1.0,
        "train/loss_cb1": 3.0,
        "train/mfu": None,
    }


@pytest.mark.parametrize(
    ("kind", "flops"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("TPU v5 lite", 197e12),
        ("TPU v5p", 459e12),
        ("TPU v4", 275e12),
        ("Some Future Chip", None),
    ],
)
def test_peak_flops_table(kind, flops):
    assert peak_flops(device(kind)) == flops


def test_mfu_is_null_on_cpu_and_a_fraction_elsewhere():
    assert mfu(1e12, 1.0, [device("cpu", "cpu")]) is None
    assert mfu(989e12 / 2, 1.0, [device("NVIDIA H100 80GB HBM3")] * 2) == pytest.approx(0.25)


def test_jsonl_resume_cuts_later_steps_and_ignores_a_torn_line(tmp_path):
    log = MetricsLogger(tmp_path, start_step=0, total_steps=10, tensorboard=True, progress=False)
    for step in range(1, 6):
        log.write(step, {"train/loss": 1.0 / step})
    log.close()
    with open(RunDir(tmp_path).metrics, "a") as f:
        f.write('{"step": 6, "train/lo')  # killed mid-write
    assert [r["step"] for r in read_jsonl(RunDir(tmp_path).metrics)] == [1, 2, 3, 4, 5]
    log = MetricsLogger(tmp_path, start_step=3, total_steps=10, tensorboard=True, progress=False)
    log.write(4, {"train/loss": 9.0, "eval/loss": None})
    log.close()
    lines = RunDir(tmp_path).metrics.read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]
    assert json.loads(lines[-1]) == {"step": 4, "train/loss": 9.0, "eval/loss": None}
    assert any(RunDir(tmp_path).tensorboard.iterdir())


def test_disabled_logger_writes_nothing(tmp_path):
    log = MetricsLogger(
        tmp_path / "x", start_step=0, total_steps=3, tensorboard=True, enabled=False
    )
    log.write(1, {"train/loss": 1.0})
    log.progress(1, loss=1.0)
    log.close()
    assert not (tmp_path / "x").exists()


def test_plot_losses_writes_a_png(tmp_path):
    assert plot_losses(tmp_path) is None
    log = MetricsLogger(tmp_path, start_step=0, total_steps=4, tensorboard=False, progress=False)
    for step in range(1, 5):
        log.write(step, {"train/loss": 5.0 - step})
    log.write(4, {"eval/loss": 2.0, "eval/loss_cb0": 2.0, "eval/unigram_cb0": 3.0})
    log.close()
    out = plot_losses(tmp_path)
    assert out == RunDir(tmp_path).loss_plot and out.read_bytes()[:4] == b"\x89PNG"
