"""The code store: the one on-disk contract between `codec_bridge` (writer) and `jtts` (reader).

Imports neither torch nor jax, so both sides can use it.

Layout of a store directory::

    STORE/
      meta.json                 store-wide metadata (codec, frame rate, codebooks, weights, version)
      shards/NAME/              one committed shard; appears only by an atomic rename
        codes.npy               uint16 [total_frames, n_q]: every utterance's frames, concatenated
        index.npy               structured array, one row per utterance (offsets, lengths)
        records.jsonl           one JSON line per utterance (id, text, speaker, path, ...)
        manifest.json           counts, sizes and sha256 of the three files above
      shards/.tmp-*             shards being written (ignored by readers, removed on resume)
      skipped.jsonl             inputs the writer skipped, with the reason
      .writer-*.lock            held by the live writer of each shard index (`codec_bridge.lock`)

Codes are stored frame-major so one utterance is one contiguous block of a memory map; a
reader opens a store by reading ``meta.json`` and the shard manifests only, so opening costs
the same for a hundred utterances or ten million.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
CODES_DTYPE = np.uint16
INDEX_DTYPE = np.dtype(
    [
        ("offset", "<i8"),  # first frame of the utterance in codes.npy
        ("frames", "<i4"),  # number of frames T
        ("duration", "<f4"),  # seconds of source audio
        ("rec_offset", "<i8"),  # byte offset of its line in records.jsonl
        ("rec_length", "<i4"),  # byte length of that line
    ]
)
_SHARD_FILES = ("codes.npy", "index.npy", "records.jsonl")
_NPY_HEADER = 128  # bytes of a .npy 1.0 header of any 2-D uint16 array (magic, dict, padding)
_REQUIRED_META = (
    "codec",
    "sample_rate",
    "frame_rate",
    "n_codebooks",
    "codebook_size",
    "bandwidth",
    "weights",
)


class StoreError(Exception):
    """A store cannot be read or written; the message names the file and what is wrong."""


class NoSpaceError(StoreError):
    """The disk (or quota) filled up while writing; what was being written has been removed."""


def write_error(e: OSError, path: Path, need: int | None = None) -> StoreError:
    """One-line error for a failed write of ``path``: a full disk says how much is free and,
    when known, how many bytes the write needed."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(_existing(path)).free
        needs = f", needs {size_text(need)}" if need else ""
        return NoSpaceError(f"{path}: no space left on device ({size_text(free)} free{needs})")
    return StoreError(f"{path}: cannot write ({e.strerror or e})")


def size_text(n: float) -> str:
    """Bytes for a message: '512 B', '32.0 kB', '93.1 MB', '1.2 GB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@dataclass(frozen=True)
class Utterance:
    """One utterance of a store. ``codes`` is ``[n_q, T]`` (``codes_KxT``)."""

    id: str
    text: str
    normalized: str
    speaker: str | None
    path: str
    duration: float
    codes: np.ndarray = field(repr=False)

    @property
    def n_frames(self) -> int:
        return int(self.codes.shape[1])


def split_of(utt_id: str, val_fraction: float) -> str:
    """'val' or 'train' from a hash of the id alone, so adding data never moves an utterance."""
    if val_fraction <= 0:
        return "train"
    h = int.from_bytes(hashlib.sha256(utt_id.encode("utf-8")).digest()[:8], "big")
    return "val" if h / 2.0**64 < val_fraction else "train"


def make_meta(
    *,
    codec: str,
    sample_rate: int,
    frame_rate: float,
    n_codebooks: int,
    codebook_size: int,
    bandwidth: float,
    weights: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """Store-wide metadata. ``weights`` says how the codec weights were obtained, e.g.
    ``{"kind": "pretrained", "sha256": ...}``, ``{"kind": "file", "path": ..., "sha256": ...}``
    or ``{"kind": "untrained", "seed": 0, "file": "codec_weights.pt"}``."""
    if codebook_size > np.iinfo(CODES_DTYPE).max + 1:
        raise StoreError(f"codebook_size {codebook_size} does not fit in {CODES_DTYPE.__name__}")
    return {
        "format_version": FORMAT_VERSION,
        "codec": codec,
        "sample_rate": int(sample_rate),
        "frame_rate": float(frame_rate),
        "n_codebooks": int(n_codebooks),
        "codebook_size": int(codebook_size),
        "bandwidth": float(bandwidth),
        "weights": dict(weights),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }


def codec_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """What makes a store's codes the codes they are (its required settings), the weights by
    content, not by where they lie: a shipped model's copy of a store's codec is that codec."""
    weights = {k: v for k, v in meta["weights"].items() if k not in ("path", "file")}
    return {**{k: meta.get(k) for k in _REQUIRED_META}, "weights": weights}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(e, path, len(data)) from None
    _fsync_dir(path.parent)


def weights_file(meta: dict[str, Any]) -> Path | None:
    """The codec weights file a store's meta (with ``store_dir``) names: a ``file``'s path, an
    ``untrained`` file kept in (or named absolutely by) the store; None for ``pretrained``."""
    record = meta["weights"]
    if record["kind"] == "pretrained":
        return None
    if record["kind"] == "file":
        return Path(record["path"])
    if record["kind"] == "untrained" and record.get("file") and meta.get("store_dir"):
        return Path(meta["store_dir"]) / record["file"]
    raise StoreError(f"the store's meta names no codec weights file ({record})")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{path}: file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path}: not valid JSON ({e})") from None


def init_store(path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Create a store (or join an existing one with the same codec settings).

    Many writers may call this at once (one per shard of a Slurm array): ``meta.json`` is
    created with an atomic link, and a writer whose settings disagree gets a clear error."""
    root = Path(path)
    meta_path = root / "meta.json"
    tmp = root / f".meta.json.{uuid.uuid4().hex}.tmp"
    try:
        (root / "shards").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(e, root / "shards") from None
    try:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.link(tmp, meta_path)
    except FileExistsError:
        existing = _read_json(meta_path)
        diff = [k for k in _REQUIRED_META if existing.get(k) != meta.get(k)]
        if diff:
            detail = ", ".join(
                f"{k}: store has {existing.get(k)!r}, writer has {meta.get(k)!r}" for k in diff
            )
            raise StoreError(
                f"{meta_path}: existing store was written with other settings ({detail})"
            ) from None
    except OSError as e:
        raise write_error(e, meta_path) from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(root)
    return root


class ShardWriter:
    """Appends utterances to one shard; nothing is visible to readers until `commit`.

    Use as a context manager: leaving the block normally commits, an exception discards.
    A process killed mid-write leaves only a ``shards/.tmp-*`` directory that readers ignore.
    A failed write (full disk, lost permissions) discards the shard, freeing its space, and
    raises a one-line `StoreError` (`NoSpaceError` for a full disk)."""

    def __init__(self, store: str | os.PathLike, name: str):
        self.root = Path(store)
        meta = _read_json(self.root / "meta.json")
        self.n_codebooks = int(meta["n_codebooks"])
        self.codebook_size = int(meta["codebook_size"])
        self.name = name
        self.final = self.root / "shards" / name
        if self.final.exists():
            raise StoreError(f"{self.final}: shard already exists")
        self.tmp = self.root / "shards" / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        self._files: list[io.BufferedWriter] = []
        with self._writing(self.tmp):
            self.tmp.mkdir(parents=True)
            # codes.npy is written in place: its header (always _NPY_HEADER bytes for a 2-D
            # uint16 array) is rewritten with the final shape on commit.
            self._codes = open(self.tmp / "codes.npy", "wb")
            self._records = open(self.tmp / "records.jsonl", "wb")
            self._files = [self._codes, self._records]
            self._codes.write(bytes(_NPY_HEADER))
        self._index: list[tuple] = []
        self._offset = 0
        self._rec_offset = 0
        self._ids: set[str] = set()

    def __len__(self) -> int:
        return len(self._index)

    @property
    def frames(self) -> int:
        return self._offset

    @contextlib.contextmanager
    def _writing(self, path: Path, need: int | None = None) -> Iterator[None]:
        try:
            yield
        except StoreError:
            self.discard()
            raise
        except OSError as e:
            self.discard()
            raise write_error(e, path, need) from None

    def add(
        self,
        utt_id: str,
        codes_KxT: np.ndarray,
        *,
        text: str,
        normalized: str | None = None,
        speaker: str | None = None,
        path: str = "",
        duration: float = 0.0,
    ) -> None:
        codes_KxT = np.asarray(codes_KxT)
        if codes_KxT.ndim != 2 or codes_KxT.shape[0] != self.n_codebooks:
            raise StoreError(
                f"{utt_id}: codes have shape {codes_KxT.shape}, expected [{self.n_codebooks}, T]"
            )
        if codes_KxT.shape[1] < 1:
            raise StoreError(f"{utt_id}: codes have no frames")
        if codes_KxT.size and (codes_KxT.min() < 0 or codes_KxT.max() >= self.codebook_size):
            raise StoreError(f"{utt_id}: codes outside [0, {self.codebook_size})")
        if utt_id in self._ids:
            raise StoreError(f"{utt_id}: id added twice to shard {self.name}")
        frames = codes_KxT.shape[1]
        data = np.ascontiguousarray(codes_KxT.T, dtype=CODES_DTYPE).tobytes()
        record = {
            "id": utt_id,
            "text": text,
            "normalized": text if normalized is None else normalized,
            "speaker": speaker,
            "path": str(path),
            "duration": float(duration),
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._writing(self.tmp):
            self._codes.write(data)
            self._records.write(line)
        self._ids.add(utt_id)
        self._index.append((self._offset, frames, duration, self._rec_offset, len(line)))
        self._offset += frames
        self._rec_offset += len(line)

    def commit(self) -> Path:
        """fsync everything, write the manifest, then atomically rename into place."""
        with self._writing(self.tmp):
            self._commit_files()
            os.rename(self.tmp, self.final)
        _fsync_dir(self.final.parent)
        return self.final

    def _commit_files(self) -> None:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header,
            {
                "descr": np.lib.format.dtype_to_descr(np.dtype(CODES_DTYPE)),
                "fortran_order": False,
                "shape": (self._offset, self.n_codebooks),
            },
        )
        self._codes.flush()
        os.pwrite(self._codes.fileno(), header.getvalue(), 0)
        for f in self._files:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        index = io.BytesIO()
        np.save(index, np.array(self._index, dtype=INDEX_DTYPE))
        with open(self.tmp / "index.npy", "wb") as f:
            f.write(index.getvalue())
            f.flush()
            os.fsync(f.fileno())
        files = {}
        for fname in _SHARD_FILES:
            p = self.tmp / fname
            files[fname] = {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "utterances": len(self._index),
            "frames": self._offset,
            "files": files,
        }
        _write_atomic(self.tmp / "manifest.json", json.dumps(manifest, indent=2).encode())

    def discard(self) -> None:
        for f in self._files:
            with contextlib.suppress(OSError):  # a full disk fails the flush of close too
                f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._index:
            self.commit()
        else:
            self.discard()


def remove_stale_tmp(store: str | os.PathLike, prefix: str) -> int:
    """Delete the half-written shards a killed writer left behind; returns how many.

    Only shards whose name starts with `prefix`, and only while holding the writer lock of
    that prefix: other writers sharing the store may be writing theirs right now."""
    stale = list((Path(store) / "shards").glob(f".tmp-{prefix}*"))
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


def append_skipped(store: str | os.PathLike, entries: Sequence[dict[str, Any]]) -> None:
    """Append skipped inputs (``{"id", "path", "reason"}``) to ``skipped.jsonl``."""
    if not entries:
        return
    path = Path(store) / "skipped.jsonl"
    data = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries).encode("utf-8")
    try:
        with open(path, "ab") as f:  # one write: concurrent writers' lines do not interleave
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise write_error(e, path, len(data)) from None


def read_skipped(store: str | os.PathLike) -> list[dict[str, Any]]:
    """Every entry of ``skipped.jsonl`` as written, including skips retried since."""
    path = Path(store) / "skipped.jsonl"
    if not path.exists():
        return []
    entries = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            with contextlib.suppress(ValueError):  # a line cut short by a full disk
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
    return entries


class _Shard:
    """A committed shard, opened lazily: files are mapped on first access."""

    def __init__(self, path: Path):
        self.path = path
        self.manifest = _read_json(path / "manifest.json")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{path / 'manifest.json'}: format version {self.manifest.get('format_version')!r}"
                f" is not supported (this reader knows {FORMAT_VERSION})"
            )
        for fname, info in self.manifest["files"].items():
            p = path / fname
            if not p.exists():
                raise StoreError(f"{p}: file is missing")
            size = p.stat().st_size
            if size != info["bytes"]:
                raise StoreError(
                    f"{p}: truncated or changed ({size} bytes, manifest says {info['bytes']})"
                )
        self.n = int(self.manifest["utterances"])

    @cached_property
    def index(self) -> np.ndarray:
        return self._load("index.npy")

    @cached_property
    def codes(self) -> np.ndarray:
        return self._load("codes.npy")

    def _load(self, fname: str) -> np.ndarray:
        try:
            return np.load(self.path / fname, mmap_mode="r")
        except (ValueError, OSError) as e:
            raise StoreError(f"{self.path / fname}: cannot be read ({e})") from None

    def record(self, row: int) -> dict[str, Any]:
        off, length = int(self.index["rec_offset"][row]), int(self.index["rec_length"][row])
        with open(self.path / "records.jsonl", "rb") as f:
            f.seek(off)
            return json.loads(f.read(length))

    def records(self) -> Iterator[dict[str, Any]]:
        with open(self.path / "records.jsonl", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    def codes_of(self, row: int) -> np.ndarray:
        off, frames = int(self.index["offset"][row]), int(self.index["frames"][row])
        return np.ascontiguousarray(self.codes[off : off + frames].T)

    def verify(self) -> list[str]:
        problems = []
        for fname, info in self.manifest["files"].items():
            if file_sha256(self.path / fname) != info["sha256"]:
                problems.append(f"{self.path / fname}: checksum mismatch (file is corrupted)")
        if problems:
            return problems
        idx = self.index
        if len(idx) != self.n:
            problems.append(f"{self.path / 'index.npy'}: {len(idx)} rows, manifest says {self.n}")
        elif self.n and int(idx["offset"][-1] + idx["frames"][-1]) != self.codes.shape[0]:
            problems.append(f"{self.path / 'index.npy'}: offsets do not cover codes.npy")
        return problems


class CodeStore:
    """Read-only view of a store: ``CodeStore.open(path)``, ``len``, ``ids``, ``get``, ``lengths``.

    Utterances are numbered in shard-name order; ``store[i]`` and ``store.get(id)`` read one
    utterance's codes from a memory map."""

    def __init__(self, root: Path, meta: dict[str, Any], shards: list[_Shard]):
        self.root = root
        self.shards = shards
        self._meta = meta
        self._starts = np.cumsum([0] + [s.n for s in shards])

    @classmethod
    def open(cls, path: str | os.PathLike) -> CodeStore:
        root = Path(path)
        if not root.is_dir():
            raise StoreError(f"{root}: code store directory does not exist")
        meta_path = root / "meta.json"
        if not meta_path.exists():
            raise StoreError(f"{meta_path}: file is missing (is {root} a code store?)")
        meta = _read_json(meta_path)
        if meta.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{meta_path}: format version {meta.get('format_version')!r} is not supported"
                f" (this reader knows {FORMAT_VERSION})"
            )
        missing = [k for k in _REQUIRED_META if k not in meta]
        if missing:
            raise StoreError(f"{meta_path}: missing fields {missing}")
        shard_dirs = sorted(
            p for p in (root / "shards").glob("*") if p.is_dir() and not p.name.startswith(".")
        )
        return cls(root, meta, [_Shard(p) for p in shard_dirs])

    @property
    def meta(self) -> dict[str, Any]:
        """Store-wide metadata plus ``shards``: each shard's utterances, frames and checksums."""
        shards = {
            s.path.name: {
                "utterances": s.n,
                "frames": s.manifest["frames"],
                "sha256": {k: v["sha256"] for k, v in s.manifest["files"].items()},
            }
            for s in self.shards
        }
        return {**self._meta, "shards": shards}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, i: int) -> tuple[_Shard, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"utterance {i} out of range [0, {len(self)})")
        s = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self.shards[s], i - int(self._starts[s])

    @cached_property
    def ids(self) -> list[str]:
        """Every utterance id in store order; raises `StoreError` if one is stored twice (a
        store two writers filled at once), so nothing trains on a damaged store."""
        ids = [r["id"] for s in self.shards for r in s.records()]
        if len(set(ids)) != len(ids):
            raise StoreError(self._duplicates()[0])
        return ids

    def _duplicates(self) -> list[str]:
        """One problem per id stored more than once, naming the shards that hold it."""
        where: dict[str, list[str]] = {}
        for s in self.shards:
            for r in s.records():
                where.setdefault(r["id"], []).append(s.path.name)
        return [
            f"{self.root}: utterance id {utt_id!r} is stored twice (shards {', '.join(names)});"
            " delete all but one of those shards and re-run extract to refill them"
            for utt_id, names in where.items()
            if len(names) > 1
        ]

    @cached_property
    def _row_of(self) -> dict[str, int]:
        return {utt_id: i for i, utt_id in enumerate(self.ids)}

    @property
    def lengths(self) -> np.ndarray:
        """Frames per utterance, ``int32 [N]``, from the indexes alone (no codes are read)."""
        if not self.shards:
            return np.zeros(0, np.int32)
        return np.concatenate([np.asarray(s.index["frames"], np.int32) for s in self.shards])

    @property
    def durations(self) -> np.ndarray:
        if not self.shards:
            return np.zeros(0, np.float32)
        return np.concatenate([np.asarray(s.index["duration"], np.float32) for s in self.shards])

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self._row_of

    def __getitem__(self, i: int) -> Utterance:
        shard, row = self._locate(i)
        rec = shard.record(row)
        return Utterance(
            id=rec["id"],
            text=rec["text"],
            normalized=rec["normalized"],
            speaker=rec["speaker"],
            path=rec["path"],
            duration=rec["duration"],
            codes=shard.codes_of(row),
        )

    def get(self, utt_id: str) -> Utterance:
        try:
            return self[self._row_of[utt_id]]
        except KeyError:
            raise KeyError(f"{self.root}: no utterance with id {utt_id!r}") from None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every utterance's record (no codes), in store order; streams from disk."""
        for s in self.shards:
            yield from s.records()

    def split_indices(self, split: str, val_fraction: float) -> np.ndarray:
        """Store indices of the 'train' or 'val' split (see `split_of`)."""
        return np.array(
            [i for i, u in enumerate(self.ids) if split_of(u, val_fraction) == split], np.int64
        )

    def skipped(self) -> list[dict[str, Any]]:
        """Inputs the store does not hold and why. An input skipped as too long (an entry with
        ``seconds``) appears once, with its latest reason, and not at all once stored."""
        entries = read_skipped(self.root)
        if not any("seconds" in e for e in entries):
            return entries
        stored = {(r["id"], r["path"]) for r in self.records()}
        last = {(e.get("id"), e.get("path")): i for i, e in enumerate(entries) if "seconds" in e}
        return [
            e
            for i, e in enumerate(entries)
            if "seconds" not in e
            or (
                last[e.get("id"), e.get("path")] == i and (e.get("id"), e.get("path")) not in stored
            )
        ]

    @property
    def nbytes(self) -> int:
        """Bytes of all committed shard files (what `verify` reads)."""
        return sum(f["bytes"] for s in self.shards for f in s.manifest["files"].values())

    def check(self, max_bytes: float) -> bool:
        """`verify` when the store is at most ``max_bytes`` (seconds of hashing), raising a
        `StoreError` naming the first problem; False, unchecked, for a larger store."""
        if self.nbytes > max_bytes:
            return False
        problems = self.verify()
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise StoreError(f"{problems[0]}{more}; python -m codec_bridge verify lists them all")
        return True

    def verify(self) -> list[str]:
        """Re-check every shard's checksums and index; returns the problems found (empty: ok)."""
        return [p for s in self.shards for p in s.verify()] + self._duplicates()


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def file_stem(utt_id: str) -> str:
    """A file name for an utterance id: the id itself when it is a plain name (letters,
    digits, ``._-``, not starting with a dot, at most 100 characters), else its plain
    characters, ``~`` and a hash of the id. So ids such as ``spk/sub/utt1`` or ``../x`` stay in
    their folder, and no two ids share a name (plain names never contain ``~``)."""
    if _PLAIN_NAME.fullmatch(utt_id):
        return utt_id
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", utt_id).strip("._")[:64]
    return f"{plain}~{hashlib.sha256(utt_id.encode('utf-8')).hexdigest()[:12]}"


def save_codes(path: str | os.PathLike, codes_KxT: np.ndarray, meta: dict[str, Any]) -> None:
    """Write one utterance's codes as ``X.npy`` with its codec metadata in ``X.json``."""
    p = Path(path)
    np.save(p, np.asarray(codes_KxT, dtype=CODES_DTYPE))
    p.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_codes(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Read codes written by `save_codes`; metadata is None when no ``.json`` sits beside them."""
    p = Path(path)
    try:
        codes = np.load(p)
    except (OSError, ValueError) as e:
        raise StoreError(f"{p}: cannot read codes ({e})") from None
    meta_path = p.with_suffix(".json")
    return codes, (_read_json(meta_path) if meta_path.exists() else None)


__all__ = [
    "FORMAT_VERSION",
    "CodeStore",
    "ShardWriter",
    "StoreError",
    "Utterance",
    "append_skipped",
    "file_stem",
    "init_store",
    "load_codes",
    "make_meta",
    "read_skipped",
    "remove_stale_tmp",
    "save_codes",
    "size_text",
    "split_of",
]
