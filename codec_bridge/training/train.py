"""``python -m codec_bridge train``: an EnCodec-architecture codec trained from scratch.

The model is the `encodec` package's own (`codec_config.build_model`), so the exported
``RUNDIR/codec.pt`` works with ``extract`` / ``decode --weights`` and anywhere an
`EncodecModel` loads. The recipe (measured on a 2-core CPU, see the README): per-crop RMS
normalization, the quantizer skipped for a warm-up, then k-means over many frames, then
quantized on a fraction of the steps with dead codes revived (`quantizer_init`), Adam, and
multi-resolution log-mel L1 + waveform L1 + commitment losses (`losses`).

The run directory's layout (config, checkpoint, weights, snapshots, metrics, samples) is
documented and owned by `codec_bridge.training.rundir`. Re-running the same command after
Ctrl-C, SIGTERM or kill -9 continues from the checkpoint with the same crops and decisions:
losses are bit-identical to an uninterrupted run on the same machine and thread count.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from codec_bridge.codec_config import CodecConfig, build_model, save_weights
from codec_bridge.errors import BridgeError
from codec_bridge.progress import progress_bar
from codec_bridge.training.data import Crops, load_corpus
from codec_bridge.training.losses import MultiResolutionMelLoss
from codec_bridge.training.quantizer_init import DeadCodeReviver, kmeans_init, live_codes
from codec_bridge.training.report import Reporter
from codec_bridge.training.rundir import CodecRunDir

CONFIG_DIR = Path(__file__).parent / "configs"
# Train settings that change no number of the run: a resumed run may use other values.
CADENCE = ("log_every", "eval_every", "checkpoint_every", "snapshot_minutes", "steps", "minutes")
PREEMPTED_EXIT_CODE = 75  # stopped by SIGTERM after saving; rerun to resume


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    batch_size: int = 4
    crop_seconds: float = 1.0
    lr: float = 1.5e-3
    betas: tuple[float, float] = (0.8, 0.99)
    mel_weight: float = 1.0
    wave_weight: float = 1.0
    commit_weight: float = 1.0
    quantizer_warmup: int = 150  # steps without the quantizer before k-means
    kmeans_crops: int = 64  # crops whose encoder frames k-means clusters
    quantize_prob: float = 0.5  # after warm-up, the fraction of steps through the quantizer
    bandwidth_dropout: bool = False  # quantized steps pick a random supported bandwidth
    dead_threshold: float = 0.1  # dead: EMA usage below this x the uniform share
    val_utterances: int = 8
    log_every: int = 10
    eval_every: int = 250
    checkpoint_every: int = 50
    snapshot_minutes: float = 10.0
    steps: int | None = None
    minutes: float | None = None


def _section(cls, d: Any, what: str):
    if not isinstance(d, dict):
        raise BridgeError(f"{what}: expected a mapping, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise BridgeError(f"{what}: unknown keys {unknown} (valid: {sorted(known)})")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def load_config(
    path: str | Path | None, overrides: list[str] = ()
) -> tuple[CodecConfig, TrainConfig]:
    """A YAML file (a name in ``codec_bridge/training/configs`` or a path) with ``codec:``
    and ``train:`` sections, then ``section.key=value`` overrides (values parsed as YAML)."""
    if path is None:
        path = "small"
    p = Path(path)
    if not p.suffix and not p.exists():
        p = CONFIG_DIR / f"{path}.yaml"
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise BridgeError(f"{p}: cannot read codec training config ({e})") from None
    if not isinstance(raw, dict) or set(raw) - {"codec", "train"}:
        raise BridgeError(f"{p}: a codec training config has only codec: and train: sections")
    raw = {"codec": dict(raw.get("codec") or {}), "train": dict(raw.get("train") or {})}
    for item in overrides:
        key, eq, value = item.partition("=")
        section, _, name = key.partition(".")
        if not eq or section not in raw or not name:
            raise BridgeError(f"--set {item}: expected codec.KEY=VALUE or train.KEY=VALUE")
        known = {f.name for f in fields(CodecConfig if section == "codec" else TrainConfig)}
        if name not in known:
            raise BridgeError(f"--set {item}: {key} is not a key (valid: {sorted(known)})")
        try:
            raw[section][name] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise BridgeError(
                f"--set {item}: cannot parse the value ({' '.join(str(e).split())})"
            ) from None
    codec = CodecConfig.from_dict(raw["codec"], f"{p}: codec")
    try:
        train = TrainConfig(**_section(TrainConfig, raw["train"], f"{p}: train"))
    except TypeError as e:
        raise BridgeError(f"{p}: train: {e}") from None
    return codec, train


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, fsync, rename: a kill leaves the old file or the new."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _StopFlag:
    """SIGTERM / first Ctrl-C: finish the step, checkpoint, exit. A second Ctrl-C: at once."""

    def __init__(self):
        self.signal: int | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


class Trainer:
    """One run directory: builds or resumes the state, then `run` trains until a limit."""

    def __init__(self, run_dir, codec: CodecConfig, train: TrainConfig, corpus, *, device="cpu"):
        self.dir, self.cfg, self.tc, self.corpus = CodecRunDir(run_dir), codec, train, corpus
        self.device = torch.device(device)
        self.crop = round(train.crop_seconds * codec.sample_rate)
        self.frames_per_step = train.batch_size * math.ceil(self.crop / codec.hop)
        torch.manual_seed(train.seed)
        self.model = build_model(codec).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=train.lr, betas=train.betas)
        self.mel = MultiResolutionMelLoss(codec.sample_rate).to(self.device)
        self.reviver = DeadCodeReviver(self.model.quantizer, train.dead_threshold)
        self.crops = Crops(corpus.train, self.crop)
        self.gen = torch.Generator().manual_seed(train.seed)
        self.step, self.seconds, self.kmeans_done, self.snapshots = 0, 0.0, False, 0
        self.dir.root.mkdir(parents=True, exist_ok=True)
        self._check_or_write_config()
        if self.dir.checkpoint.exists():
            self._restore()
        self.report = Reporter(self.dir, self.step, codec.sample_rate)

    # -- state ------------------------------------------------------------------------------

    def _config_record(self) -> dict[str, Any]:
        train = {k: v for k, v in asdict(self.tc).items() if k not in CADENCE}
        return {"codec": self.cfg.to_dict(), "train": train}

    def _check_or_write_config(self) -> None:
        """A resumed run must be the same run; limits and cadences (`CADENCE`) may change."""
        path = self.dir.config
        want = json.loads(json.dumps(self._config_record()))
        if path.exists():
            have = json.loads(path.read_text(encoding="utf-8"))
            diff = [
                f"{s}.{k}"
                for s in want
                for k in sorted(set(want[s]) | set(have.get(s, {})))
                if want[s].get(k) != have.get(s, {}).get(k)
            ]
            if diff:
                raise BridgeError(
                    f"{path}: the run was started with other settings ({', '.join(diff)});"
                    " use a new --out or the same config"
                )
        else:
            path.write_text(json.dumps(want, indent=2) + "\n", encoding="utf-8")

    def _save(self) -> None:
        _atomic_save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "step": self.step,
                "seconds": self.seconds,
                "kmeans_done": self.kmeans_done,
                "snapshots": self.snapshots,
                "generator": self.gen.get_state(),
                "torch_rng": torch.get_rng_state(),
            },
            self.dir.checkpoint,
        )
        save_weights(self.dir.weights, self.model, self.cfg)

    def _restore(self) -> None:
        path = self.dir.checkpoint
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
        except Exception as e:  # torch raises many types for a bad file
            raise BridgeError(f"{path}: cannot resume ({' '.join(str(e).split())[:200]})") from None
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.kmeans_done, self.snapshots = bool(state["kmeans_done"]), int(state["snapshots"])
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])

    # -- one step ---------------------------------------------------------------------------

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """What `EncodecModel._encode_frame` does with ``normalize``: unit RMS per crop."""
        if not self.cfg.normalize:
            return x
        return x / (1e-8 + x.mean(1, keepdim=True).pow(2).mean(2, keepdim=True).sqrt())

    @torch.no_grad()
    def _kmeans(self) -> None:
        x = self._normalize(self.crops.sample(self.tc.kmeans_crops, self.gen).to(self.device))
        emb = torch.cat([self.model.encoder(c) for c in x.split(self.tc.batch_size)])
        kmeans_init(self.model.quantizer, emb, self.frames_per_step, seed=self.tc.seed)
        self.kmeans_done = True

    def train_step(self) -> dict[str, Any]:
        tc, m = self.tc, self.model
        if self.step >= tc.quantizer_warmup and not self.kmeans_done:
            self._kmeans()
        m.train()
        x = self._normalize(self.crops.sample(tc.batch_size, self.gen).to(self.device))
        coin = torch.rand((), generator=self.gen).item()
        quantize = self.kmeans_done and coin < tc.quantize_prob
        bandwidth = self.cfg.bandwidths[-1]
        if quantize and tc.bandwidth_dropout:
            pick = torch.randint(0, len(self.cfg.bandwidths), (), generator=self.gen).item()
            bandwidth = self.cfg.bandwidths[pick]
        emb = m.encoder(x)
        commit = torch.zeros((), device=self.device)
        if quantize:
            q = m.quantizer(emb, m.frame_rate, bandwidth)
            emb, commit = q.quantized, q.penalty
        y = m.decoder(emb)[..., : x.shape[-1]]
        mel = self.mel(y, x)
        wave = (y - x).abs().mean()
        loss = tc.mel_weight * mel + tc.wave_weight * wave + tc.commit_weight * commit
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        revived = self.reviver.step(self.frames_per_step, self.gen) if quantize else 0
        return {
            "loss": loss.item(),
            "mel": mel.item(),
            "wave": wave.item(),
            "commit": commit.item(),
            "quantized": int(quantize),
            "bandwidth": bandwidth if quantize else 0.0,
            "revived": revived,
        }

    # -- the loop ---------------------------------------------------------------------------

    def _done(self) -> bool:
        tc = self.tc
        return (tc.steps is not None and self.step >= tc.steps) or (
            tc.minutes is not None and self.seconds >= 60 * tc.minutes
        )

    def _bar(self) -> tqdm:
        if self.tc.steps is not None:
            return progress_bar(total=self.tc.steps, initial=self.step, unit="step")
        total = round(60 * self.tc.minutes)
        return progress_bar(total=total, initial=min(total, round(self.seconds)), unit="s")

    def _snapshot_due(self) -> bool:
        return self.seconds >= 60 * self.tc.snapshot_minutes * (self.snapshots + 1)

    def run(self, progress: bool = True) -> int:
        """Train until ``steps`` / ``minutes``; returns 0, or `PREEMPTED_EXIT_CODE` after a
        signal (the checkpoint is saved either way)."""
        if self.tc.steps is None and self.tc.minutes is None:
            raise BridgeError("give --steps N or --minutes M (or train.steps / train.minutes)")
        tc = self.tc
        bar = self._bar() if progress else None
        with _StopFlag() as stop:
            while not self._done() and stop.signal is None:
                t0 = time.perf_counter()
                row = self.train_step()
                dt = time.perf_counter() - t0
                self.step += 1
                self.seconds += dt
                if self.step % tc.log_every == 0 or self.step == 1:
                    live = live_codes(self.model.quantizer, self.frames_per_step, tc.dead_threshold)
                    self.report.log(
                        self.step, {**row, "s_per_step": dt, "minutes": self.seconds / 60}, live
                    )
                if self.step % tc.eval_every == 0:
                    self.report.evaluate(self.step, self.model, self.corpus.val, self.mel)
                if self._snapshot_due():
                    self.snapshots += 1
                    snap = self.dir.snapshot(round(self.seconds / 60))
                    snap.parent.mkdir(exist_ok=True)
                    save_weights(snap, self.model, self.cfg)
                if self.step % tc.checkpoint_every == 0:
                    self._save()
                if bar is not None:
                    bar.n = (
                        self.step if tc.steps is not None else min(bar.total, round(self.seconds))
                    )
                    bar.set_postfix(
                        loss=f"{row['loss']:.3f}", mel=f"{row['mel']:.3f}", refresh=False
                    )
                    bar.refresh()
            self._save()
        if bar is not None:
            bar.close()
        self.report.close()
        return 0 if stop.signal is None else PREEMPTED_EXIT_CODE


def train(
    format: str,
    input: str | Path,
    out: str | Path,
    *,
    config: str | Path | None = None,
    overrides: list[str] = (),
    steps: int | None = None,
    minutes: float | None = None,
    limit: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> int:
    """Train (or resume) the codec in ``out``; the API behind the CLI."""
    codec, tc = load_config(config, overrides)
    if steps is not None or minutes is not None:
        tc = replace(tc, steps=steps, minutes=minutes)
    if threads:
        torch.set_num_threads(threads)
    corpus = load_corpus(
        format,
        input,
        sample_rate=codec.sample_rate,
        channels=codec.channels,
        val_utterances=tc.val_utterances,
        min_seconds=0.1,
        limit=limit,
    )
    if progress:
        print(
            f"codec_bridge train: {len(corpus.train)} utterances ({corpus.train_seconds / 60:.1f}"
            f" min) for training, {len(corpus.val)} held out, {len(corpus.skipped)} skipped;"
            f" {codec.name}, {codec.n_q} codebooks"
        )
    trainer = Trainer(out, codec, tc, corpus, device=device)
    return trainer.run(progress=progress)
