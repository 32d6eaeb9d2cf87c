"""The codec training run directory (``codec_bridge train --out RUN``): the one owner of
every path a codec training run holds.

`codec_bridge.training.train` and `codec_bridge.training.report` write it, ``bench/codec_train.py``
reads it; none of them spells a path inside it, they ask `CodecRunDir`. Imports neither jax
nor torch, so any reader can use it.

Layout of a run directory::

    RUN/
      config.json               the codec and train settings that change the run's numbers;
                                a resumed run must match it (`train.Trainer`)
      checkpoint.pt             everything needed to continue: weights, optimizer, step,
                                training seconds, k-means done, snapshots taken, random
                                generator states
      codec.pt                  the weights file (`codec_config.save_weights`), refreshed at
                                every checkpoint: what ``extract`` / ``decode --weights`` load
      snapshots/codec_NNNNmin.pt   a weights file every ``snapshot_minutes`` of training, named
                                by the training minutes (rounded) it was taken at
      metrics.jsonl             one JSON object per logged step, ``kind`` train or eval
                                (`report`)
      tb/                       TensorBoard events
      samples/step_N/ID.wav     the first held-out utterances decoded through the codes at
                                evaluation N, beside spectrogram.png (original over codec)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from codec_bridge.format import file_stem

_SNAPSHOT = re.compile(r"codec_(\d+)min\.pt")


@dataclass(frozen=True)
class CodecRunDir:
    """The paths of one codec training run directory; naming a path creates nothing."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))  # a str is accepted too

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def weights(self) -> Path:
        return self.root / "codec.pt"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    def snapshot(self, minutes: int) -> Path:
        return self.snapshots_dir / f"codec_{minutes:04d}min.pt"

    def snapshots(self) -> list[tuple[int, Path]]:
        """(training minutes, weights file) of every snapshot, oldest first."""
        found = []
        for p in self.snapshots_dir.glob("codec_*min.pt"):
            if m := _SNAPSHOT.fullmatch(p.name):
                found.append((int(m.group(1)), p))
        return sorted(found)

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    def samples(self, step: int) -> Path:
        return self.root / "samples" / f"step_{step}"

    def sample(self, step: int, utterance_id: str) -> Path:
        return self.samples(step) / f"{file_stem(utterance_id)}.wav"

    def spectrogram(self, step: int) -> Path:
        return self.samples(step) / "spectrogram.png"
