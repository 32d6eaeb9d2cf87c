"""Training metrics on the host: JSON lines, TensorBoard, a tqdm bar, MFU and a loss plot.

Every logged step is one JSON object in the run's metrics file (`RunDir.metrics`) with
`step` and namespaced keys (`train/loss`, `train/loss_cb0`, `eval/loss`, `eval/unigram_cb0`,
...). Only process 0 writes. On resume the file is cut back to the restored step, so it always
describes one trajectory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from codec_bridge.progress import progress_bar
from jtts.rundir import RunDir

# Dense bf16 peak FLOP/s per device, matched as substrings of `device.device_kind` in order.
PEAK_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("TPU v6 lite", 918e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v5", 459e12),
    ("TPU v4", 275e12),
    ("TPU v3", 123e12),
    ("TPU v2", 45e12),
)


def peak_flops(device: jax.Device) -> float | None:
    """Dense bf16 peak of one device, or None where unknown (CPUs: MFU is reported null)."""
    if device.platform == "cpu":
        return None
    for name, flops in PEAK_FLOPS:
        if name.lower() in device.device_kind.lower():
            return flops
    return None


def mfu(flops_per_step: float, step_time_s: float, devices: list[jax.Device]) -> float | None:
    """Model FLOPs utilisation against the devices' bf16 peak; None when a peak is unknown."""
    peaks = [peak_flops(d) for d in devices]
    if step_time_s <= 0 or any(p is None for p in peaks):
        return None
    return flops_per_step / step_time_s / sum(peaks)


def unigram_entropy(counts_KxV: np.ndarray) -> np.ndarray:
    """Entropy (nats) per codebook of the target distribution: the loss of a model that
    ignores text and context and predicts each codebook's code frequencies."""
    p = counts_KxV / np.maximum(counts_KxV.sum(axis=1, keepdims=True), 1)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=1)


def flatten(prefix: str, metrics: dict[str, Any]) -> dict[str, float | None]:
    """{'loss': x, 'loss_cb': [a, b]} -> {'p/loss': x, 'p/loss_cb0': a, 'p/loss_cb1': b}."""
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        if value is None:
            out[f"{prefix}/{key}"] = None
            continue
        arr = np.asarray(value)
        if arr.ndim == 0:
            out[f"{prefix}/{key}"] = arr.item()
        else:
            out.update({f"{prefix}/{key}{i}": v.item() for i, v in enumerate(arr.reshape(-1))})
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines metrics file; a torn last line (killed writer) is ignored."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLogger:
    """Writes the metrics file, TensorBoard events and drives the progress bar."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        start_step: int,
        total_steps: int,
        tensorboard: bool,
        enabled: bool = True,
        progress: bool = True,
    ):
        self.run = RunDir(run_dir)
        self.path = self.run.metrics
        self.enabled = enabled
        self._tb = None
        self._bar = None
        self._bar_args = {"total": total_steps, "initial": start_step} if progress else None
        if not enabled:
            return
        self.run.root.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= start_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(self.path, "a", buffering=1)
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.run.tensorboard), purge_step=start_step + 1)

    def write(self, step: int, values: dict[str, float | None]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps({"step": step, **values}) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                if value is not None:
                    self._tb.add_scalar(key, value, step)

    def image(self, tag: str, image_HxW: np.ndarray, step: int) -> None:
        """A greyscale picture (values in [0, 1], row 0 at the bottom) in TensorBoard."""
        if self._tb is not None:
            self._tb.add_image(tag, np.asarray(image_HxW)[None, ::-1], step, dataformats="CHW")

    def progress(self, step: int, **postfix: float) -> None:
        """Advances the tqdm bar (created on first use, after the startup messages)."""
        if self.enabled and self._bar is None and self._bar_args is not None:
            self._bar = progress_bar(unit="step", **self._bar_args)
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def say(self, message: str) -> None:
        """Console line that does not break the progress bar."""
        if self.enabled:
            (self._bar.write if self._bar is not None else print)(message)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        self._file.close()


def plot_losses(run_dir: str | Path) -> Path | None:
    """The run's loss plot (`RunDir.loss_plot`): train/eval loss, and eval loss per codebook
    beside its unigram baseline (dashed). None when nothing was logged."""
    run = RunDir(run_dir)
    records = read_jsonl(run.metrics)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, style in (("train/loss", "-"), ("eval/loss", "o-"), ("eval/unigram", "--")):
        x, y = series(key)
        if x:
            ax0.plot(x, y, style, label=key)
    ax0.set(xlabel="step", ylabel="cross-entropy (nats)", title="loss")
    ax0.legend()
    k = 0
    while any(f"eval/loss_cb{k}" in r for r in records):
        (line,) = ax1.plot(*series(f"eval/loss_cb{k}"), "o-", label=f"cb{k}")
        x, y = series(f"eval/unigram_cb{k}")
        if x:
            ax1.plot(x, y, "--", color=line.get_color())
        k += 1
    ax1.set(xlabel="step", ylabel="nats", title="eval loss per codebook (dashed: unigram)")
    if k:
        ax1.legend(ncol=2, fontsize="small")
    fig.tight_layout()
    out = run.loss_plot
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
