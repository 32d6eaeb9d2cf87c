"""The sampler's side of the codec: codes files with their sidecar (`write_codes`, through
`codec_bridge.format`), and `python -m codec_bridge decode` / `encode` run in a subprocess
(`codec_decoder`, `encode_prompt`), so that this package never imports torch.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codec_bridge.format import load_codes, save_codes
from jtts.trained_run import Run, UsageError


class CodecError(Exception):
    """The codec subprocess failed; the CLI prints its one-line error and exits 1."""


PROMPT_SECONDS = (1.0, 10.0)  # a voice prompt's shortest and longest clip


def write_codes(
    run: Run, path: Path, codes_KxT: np.ndarray, text: str, normalized: str, **extra: Any
) -> None:
    """codes .npy + .json sidecar (store meta, store_dir, text, normalized, step, `extra`: the
    sampler adds `eos`, whether the text ended by EOS rather than at the length cap)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**run.store_meta, "text": text, "normalized": normalized, "step": run.step, **extra}
    save_codes(path, codes_KxT, meta)


def _command(command: str, args: Sequence[Any]) -> list[str]:
    return [sys.executable, "-m", "codec_bridge", command, *map(str, args)]


def _last_line(code: int, out: str, err: str) -> str:
    """What a failed `codec_bridge` said last (its one-line error), else its exit code."""
    lines = [ln.strip() for ln in (err + out).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {code}"


def _codec_bridge(command: str, args: Sequence[Any]) -> tuple[int, str]:
    """`python -m codec_bridge COMMAND ARGS`: its exit code and its last line of output."""
    proc = subprocess.run(_command(command, args), capture_output=True, text=True)
    return proc.returncode, _last_line(proc.returncode, proc.stdout, proc.stderr)


@contextlib.contextmanager
def codec_decoder(args: list[str], codes: str | None) -> Iterator[Callable[[], None]]:
    """`python -m codec_bridge decode ARGS --wait`, started now so that its imports (torch,
    about 1.7 s on 2 CPU cores) overlap the sampler's load and decode; the yielded `go`, called
    once the codes are written, decodes them (a failure is a CodecError with the decoder's last
    line). Leaving without `go` (an error in between) stops the decoder."""
    proc = subprocess.Popen(
        _command("decode", [*args, "--wait"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def go() -> None:
        out, err = proc.communicate("go\n")
        if proc.returncode != 0:
            detail = _last_line(proc.returncode, out, err)
            kept = f"the codes are in {codes}" if codes else "pass --codes-out to keep the codes"
            raise CodecError(f"codec decode failed: {detail} ({kept}; fix the codec and rerun)")

    try:
        yield go
    finally:
        if proc.returncode is None:  # `go` was not called
            proc.kill()
            proc.communicate()


def encode_prompt(run: Run, wav: str) -> np.ndarray:
    """A voice prompt's codes_KxP, from `python -m codec_bridge encode` with the codec and
    bandwidth of the run's store. Audio it refuses (missing, unreadable, silent, shorter or
    longer than PROMPT_SECONDS) or a codec it cannot load (its exit 2) is a UsageError naming
    `--prompt-wav`; any other failure a CodecError."""
    lo, hi = PROMPT_SECONDS
    with tempfile.TemporaryDirectory(prefix="jtts-prompt-") as tmp:
        meta, out = Path(tmp) / "meta.json", Path(tmp) / "prompt.npy"
        meta.write_text(json.dumps(run.store_meta), encoding="utf-8")
        args = [wav, "--meta", meta, "--out", out, "--min-seconds", lo, "--max-seconds", hi]
        code, detail = _codec_bridge("encode", args)
        codes = load_codes(out)[0] if code == 0 else None
    if codes is None:
        detail = detail.removeprefix("codec_bridge encode: error: ").removeprefix(f"{wav}: ")
        if code == 2:
            raise UsageError(f"--prompt-wav {wav}: {detail}")
        raise CodecError(f"codec encode failed: --prompt-wav {wav}: {detail}")
    if codes.shape[0] != run.cfg.model.n_codebooks:
        raise UsageError(
            f"--prompt-wav {wav}: the codec gave {codes.shape[0]} codebooks, the model reads "
            f"{run.cfg.model.n_codebooks}; the run's store.json names the wrong codec"
        )
    return codes
