"""A trained run as the sampler reads it: its checkpoint and the code store it was trained on
(`load_run`), its text front end (`encode`: the run's normalizer and `jtts.data.encode_text`,
as training encoded text) and its tables of names for each other attribute it reads
(`choose_categories`, `list_names`). Bad input is a `UsageError` naming the option or file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from jtts import conditioning, shipped
from jtts.checkpoint import CheckpointError, load_model
from jtts.config import Config, ConfigError, load_config
from jtts.data import encode_text
from jtts.rundir import RunDir, RunDirError
from jtts.text import normalize
from jtts.verbalize import split_sentences


class UsageError(Exception):
    """Bad arguments or input; the CLI prints the one-line message and exits 2."""


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained model ready to sample, with the code store it was trained on."""

    run_dir: Path
    cfg: Config
    model: nnx.Module
    step: int
    store_meta: dict[str, Any]  # codec meta of the training store, with store_dir

    @property
    def frame_rate(self) -> float:
        return float(self.store_meta["frame_rate"])


def _store_meta(run: RunDir) -> dict[str, Any]:
    """The training store's meta: the run's store reference, else a training sample's sidecar."""
    path = run.store
    if not path.exists():
        samples = sorted(run.sample_sidecars(), key=lambda p: p.stat().st_mtime)
        if not samples:
            raise UsageError(
                f"{run.root} does not say which code store it was trained on (no {path.name} "
                f"and no {run.samples_dir.name}/); write the store's meta.json plus "
                f'"store_dir" to {path}'
            )
        path = samples[-1]
    meta = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in meta.items() if k not in ("id", "text", "step", "shards")}


def load_run(run_dir: str | Path, step: int | None = None) -> Run:
    """Restores the best (or latest, or `step`) checkpoint's parameters and saved config, or a
    shipped model's (`jtts.shipped`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(
            f"--workdir {run_dir}: no such directory (pass a training run or a shipped model)"
        )
    if shipped.is_shipped(run_dir):
        try:
            cfg, model, saved, codec = shipped.read(run_dir)
        except shipped.ShippedError as e:
            raise UsageError(str(e)) from None
        if step is not None and step != saved:
            raise UsageError(f"--step {step}: {run_dir} is a shipped model of step {saved}")
        return Run(run_dir, cfg, model, saved, codec)
    paths = RunDir(run_dir)
    try:
        paths.layout()
    except RunDirError as e:
        raise UsageError(str(e)) from None
    if not paths.has_checkpoints():
        raise UsageError(
            f"{run_dir} has no checkpoints; train first (python -m jtts.train ... "
            f"--workdir {run_dir}) or pass another --workdir"
        )
    store_meta = _store_meta(paths)
    try:
        cfg, model, step = load_model(run_dir, step)
    except CheckpointError as e:
        raise UsageError(f"{e}; pass --step with one of the saved steps") from None
    return Run(run_dir, cfg, model, step, store_meta)


def encode(
    run: Run, text: str, where: str, *, split: bool = False, lead: str = ""
) -> tuple[list[np.ndarray], str]:
    """Token ids of `text` as training encoded it (one array, or one per sentence), and the
    normalized text they encode: what the model reads, e.g. the spoken form of numbers.
    `lead` (a voice prompt's transcript) is read before each piece."""
    normalizer, m = run.cfg.data.text_normalizer, run.cfg.model
    chunks, said = [], []
    for piece in split_sentences(text) if split else [text]:
        spoken = normalize(piece, normalizer)
        ids = encode_text(f"{lead} {piece}" if lead else piece, normalizer, m.text_units)
        if len(ids) > m.max_text_len:
            fix = "split that sentence" if split else "shorten it or pass --split-sentences"
            what = " with the --prompt-text before it" if lead else ""
            raise UsageError(
                f"{where}: {len(ids)} text {m.text_units} after normalization{what}, the model "
                f"reads at most {m.max_text_len}; {fix}"
            )
        # Only letters or digits are said: a lone "." or the joiner of an emoji would be babble.
        if any(c.isalnum() for c in spoken):
            chunks.append(ids)
            said.append(spoken)
    if not chunks:
        raise UsageError(
            f"{where}: the text is empty after normalization ({normalizer}): no letters or "
            "digits to say"
        )
    return chunks, " ".join(said)


def choose_categories(cfg: Config, o: Mapping[str, Any], where: Path) -> dict[str, int]:
    """The id of each attribute the run reads besides the text, from its `--NAME` option; with
    a voice prompt (`--prompt-wav`) and no option, the attribute's learned null
    (`conditioning.NULL`), so that the prompt alone sets the voice; else the speaker its config
    names (`sample.speaker`) or the only name of a table of one. A name the run does not know,
    an option the run has no attribute for, or no choice among several names is a UsageError."""
    attrs = {a.name: c for a, c in conditioning.attributes(cfg.model)}
    for name in conditioning.ATTRIBUTES:
        if o.get(name) is not None and name not in attrs:
            raise UsageError(f"--{name}: {where} was not trained with a {name} (model.conditions)")
    defaults = {"speaker": cfg.sample.speaker}
    chosen = {}
    for name, c in attrs.items():
        value = o.get(name)
        if value is None and len(c.values) > 1:
            if o.get("prompt_wav") is not None:
                chosen[name] = conditioning.NULL
                continue
            value = defaults.get(name)
            if value is None:
                raise UsageError(
                    f"{where} speaks as {len(c.values)} {name}s; choose one with --{name} "
                    f"({', '.join(c.values[:10])}{', ...' if len(c.values) > 10 else ''}) "
                    "or give a voice prompt (--prompt-wav)"
                )
        try:
            chosen[name] = conditioning.lookup(
                cfg.model, name, c.values[0] if value is None else value
            )
        except ValueError as e:
            raise UsageError(f"--{name}: {e}") from None
    return chosen


def run_config(workdir: str | Path) -> Config:
    """A training run's or a shipped model's saved config, without reading its weights."""
    try:
        if shipped.is_shipped(workdir):
            return shipped.read_config(workdir)
        if RunDir(workdir).config.is_file():
            return load_config(RunDir(workdir).config)
    except (ConfigError, shipped.ShippedError) as e:
        raise UsageError(f"--workdir {workdir}: {e}") from None
    raise UsageError(
        f"--workdir {workdir}: not a training run (no config.json) nor a shipped model "
        f"(no {shipped.MODEL_JSON})"
    )


def list_names(workdir: str | Path, name: str) -> list[str]:
    """The names a run's attribute `name` knows (its saved config's table), for --list-NAMEs."""
    cfg = run_config(workdir)
    attrs = {a.name: c for a, c in conditioning.attributes(cfg.model)}
    if name not in attrs:
        raise UsageError(
            f"--list-{name}s: {workdir} was not trained with a {name} (model.conditions)"
        )
    return list(attrs[name].values)
