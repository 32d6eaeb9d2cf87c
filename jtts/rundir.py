"""The run directory (``--workdir``): the one owner of every path a training run holds.

`jtts.train` writes it, `jtts.sample`, the demo and the benches read it; none of them spells
a path inside it, they ask `RunDir`. Imports neither jax nor torch, so any reader can use it.

Layout of a run directory (layout version `LAYOUT_VERSION`)::

    RUN_DIR/
      run.json                  {"layout": N}: this layout's version (absent in runs written
                                before it was recorded, which have layout 1)
      config.json               the resolved config (`jtts.config.load_config` reads it back)
      store.json                the training store's meta.json plus "store_dir": the codec
                                that turns generated codes into audio
      checkpoints/STEP/         orbax: params, ema, opt, data, meta (`jtts.checkpoint`)
      checkpoints/STEP.damaged-TIME/   a damaged checkpoint moved aside on resume
      metrics.jsonl             one JSON object per logged step (`jtts.metrics`)
      tb/                       TensorBoard events
      loss.png                  loss curves, drawn when training stops
      attention/step_N.npy      the first validation utterance's attention (text x steps)
      samples/step_N/ID.npy     validation texts sampled at evaluation N, each with ID.json
                                (store meta, store_dir, id, text, step)
      .lock                     held by the live trainer (`jtts.workdir`)

A run is read by any jtts whose `LAYOUT_VERSION` is at least the run's; a newer layout is a
one-line `RunDirError`, never a misread file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

LAYOUT_VERSION = 1
_STEP = re.compile(r"step_(\d+)")


class RunDirError(Exception):
    """A run directory that cannot be used: written by a newer, incompatible jtts, an
    unreadable run.json, or (`jtts.workdir.WorkdirError`) in use; the message names it."""


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory; naming a path creates nothing."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))  # a str is accepted too

    @property
    def layout_file(self) -> Path:
        return self.root / "run.json"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def store(self) -> Path:
        return self.root / "store.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / str(step)

    def damaged_checkpoint(self, step: int, stamp: str) -> Path:
        return self.checkpoints / f"{step}.damaged-{stamp}"

    def saved_steps(self) -> list[int]:
        """The steps of the checkpoint folders, ascending: neither set-aside damaged ones nor
        orbax's unfinished temporaries."""
        return sorted(int(p.name) for p in self.checkpoints.glob("[0-9]*") if p.name.isdigit())

    def has_checkpoints(self) -> bool:
        """Whether anything was ever saved under checkpoints/ (intact or not)."""
        return any(self.checkpoints.glob("[0-9]*"))

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def loss_plot(self) -> Path:
        return self.root / "loss.png"

    def attention(self, step: int) -> Path:
        return self.root / "attention" / f"step_{step}.npy"

    def attention_steps(self) -> dict[int, Path]:
        """Saved attention pictures by step, oldest first."""
        found = {}
        for p in self.root.glob("attention/step_*.npy"):
            if m := _STEP.fullmatch(p.stem):
                found[int(m.group(1))] = p
        return dict(sorted(found.items()))

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    def samples(self, step: int) -> Path:
        return self.samples_dir / f"step_{step}"

    def sample_sidecars(self) -> list[Path]:
        """The .json sidecars of every evaluation's samples."""
        return list(self.samples_dir.glob("step_*/*.json"))

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def layout(self) -> int:
        """The run's layout version (1 without run.json); `RunDirError` for one newer than
        this jtts reads, or a run.json that does not say."""
        try:
            text = self.layout_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 1
        except OSError as e:
            raise RunDirError(f"{self.layout_file}: cannot read ({e.strerror})") from None
        try:
            version = json.loads(text)["layout"]
        except (ValueError, KeyError, TypeError):
            raise RunDirError(f'{self.layout_file}: not {{"layout": N}}: {text[:80]!r}') from None
        if not isinstance(version, int) or version < 1:
            raise RunDirError(f"{self.layout_file}: layout {version!r} is not a version number")
        if version > LAYOUT_VERSION:
            raise RunDirError(
                f"{self.layout_file}: run directory layout {version}, this jtts reads layout "
                f"{LAYOUT_VERSION} and older; use the jtts version that wrote the run"
            )
        return version

    def write_layout(self) -> None:
        """Records this jtts's layout version (after `layout` accepted the run's)."""
        self.layout_file.write_text(json.dumps({"layout": LAYOUT_VERSION}) + "\n")
