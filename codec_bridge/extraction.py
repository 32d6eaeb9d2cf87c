"""Corpus -> code store: read, convert and encode every utterance once, resumably.

The run is idempotent: what a store already holds (committed shard parts and skipped.jsonl)
is not redone, so re-running the same command after Ctrl-C, kill -9 or a preempted job
finishes the rest, and N processes (``num_shards``) fill one store without talking to each
other. The run itself (reading ahead, encoding, writing parts) is `codec_bridge.pipeline`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from codec_bridge.codec import Codec, check_settings, load_codec
from codec_bridge.errors import BridgeError
from codec_bridge.format import (
    CodeStore,
    StoreError,
    init_store,
    make_meta,
    read_skipped,
    remove_stale_tmp,
)
from codec_bridge.lock import Lock, LockedError, acquire, holder
from codec_bridge.pipeline import Run, Summary
from codec_bridge.readers import read_corpus

__all__ = ["Summary", "extract", "shard_of"]


def shard_of(utt_id: str, num_shards: int) -> int:
    """Which of ``num_shards`` owns an utterance: a hash of its id, so the split does not
    depend on corpus order, on ``--limit`` or on which other files exist."""
    return int.from_bytes(hashlib.sha256(utt_id.encode("utf-8")).digest()[:8], "big") % num_shards


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[threading.Event]:
    """First Ctrl-C (or SIGTERM from a job scheduler) asks the loop to stop after the current
    batch and commit; a second one interrupts at once."""
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        old = {}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Skipped:
    """The inputs earlier runs skipped, keyed by (id, path) and, for a duplicate id at the same
    path, its text: no skip may hide the utterance that owns the id. Inputs skipped as longer
    than a ``--max-seconds`` that has since been raised are left out, to be retried."""

    def __init__(self, out: Path, max_seconds: float):
        self.keys: dict[tuple[str, str], set[str | None]] = {}
        self.retried: set[tuple[str, str]] = set()
        for entry in read_skipped(out):
            key = (entry.get("id"), entry.get("path"))
            if entry.get("seconds", 0.0) > max_seconds or "seconds" not in entry:
                self.keys.setdefault(key, set()).add(entry.get("text"))
            else:
                self.retried.add(key)
        self.retried -= self.keys.keys()

    def __contains__(self, item) -> bool:
        texts = self.keys.get((item.id, str(item.path)))
        return texts is not None and (None in texts or item.text in texts)


def _lock_writer(out: Path, shard_index: int, num_shards: int) -> Lock:
    """Hold the store's lock for this shard index: two runs of the same command would encode
    the same utterances into different parts. Writers that split the corpus another way
    (another ``--num-shards``) while this one runs are refused too, for the same reason."""
    split = f"-of-{num_shards:05d}"
    path = out / f".writer-{shard_index:05d}{split}.lock"
    try:
        lock = acquire(path, f"store {out} (shard {shard_index} of {num_shards})")
    except LockedError as e:
        raise BridgeError(str(e)) from None
    except OSError as e:
        raise BridgeError(f"{out}: cannot write to the store ({e.strerror})") from None
    digits = "[0-9]" * 5
    for other in sorted(out.glob(f".writer-{digits}-of-{digits}.lock")):
        who = None if other.name.endswith(f"{split}.lock") else holder(other)
        if who:
            lock.release()
            n = int(other.name.removesuffix(".lock").rpartition("-of-")[2])
            raise BridgeError(
                f"store {out} is being filled with --num-shards {n} by {who}; "
                f"use --num-shards {n} too, or wait for it to end"
            )
    return lock


def _open_store(out: Path, codec: Codec, format: str, input: Path) -> set[str]:
    """Create or join the store; returns the ids it already holds."""
    try:
        init_store(out, make_meta(**codec.meta(source={"format": format, "input": str(input)})))
        return set(CodeStore.open(out).ids)
    except StoreError as e:
        raise BridgeError(str(e)) from None


def _check_untrained_store(out: Path, weights: str) -> None:
    """Refuse before writing codec_weights.pt into a store made with other weights."""
    meta = out / "meta.json"
    if weights == "untrained" and meta.exists():
        try:
            kind = json.loads(meta.read_text(encoding="utf-8")).get("weights", {}).get("kind")
        except (OSError, ValueError, AttributeError):
            return  # init_store reports an unreadable meta.json
        if kind != "untrained":
            raise BridgeError(f"{meta}: store was written with {kind!r} weights, not untrained")


def extract(
    input: str | Path,
    out: str | Path,
    *,
    format: str,
    model: str = "24khz",
    bandwidth: float = 6.0,
    weights: str | Path = "pretrained",
    device: str = "auto",
    batch_seconds: float = 80.0,
    num_shards: int = 1,
    shard_index: int = 0,
    limit: int | None = None,
    max_seconds: float = 60.0,
    workers: int = 2,
    threads: int | None = None,
    seed: int = 0,
    part_utterances: int = 2000,
    part_seconds: float = 3600.0,
    progress: bool = True,
) -> Summary:
    """Encode a corpus (or this process's ``1/num_shards`` of it) into the store at ``out``.

    ``limit`` takes the first N utterances by id before sharding, so every shard agrees on the
    subset. A shard part is committed every ``part_utterances`` utterances or ``part_seconds``
    of audio. ``workers`` threads read audio; ``threads`` batches are encoded at once, each on
    ``cores / threads`` CPU threads (default: one per core; one on CUDA). Inputs listed in
    skipped.jsonl are not retried (delete their lines to retry them), except those that were
    too long for a ``max_seconds`` lower than this one. Raises `BridgeError` for
    bad arguments, and `KeyboardInterrupt` after committing what was done when stopped by
    Ctrl-C or SIGTERM."""
    if not 0 <= shard_index < num_shards:
        raise BridgeError(f"--shard-index {shard_index} must be in [0, --num-shards {num_shards})")
    for name, value in [
        ("batch-seconds", batch_seconds),
        ("max-seconds", max_seconds),
        ("workers", workers),
        ("threads", threads or 1),
        ("part-utterances", part_utterances),
        ("part-seconds", part_seconds),
        ("limit", limit or 1),
    ]:
        if value <= 0:
            raise BridgeError(f"--{name} {value}: must be positive")
    check_settings(model, bandwidth)
    input, out = Path(input).absolute(), Path(out)
    if out.exists() and not out.is_dir():
        raise BridgeError(f"{out}: --out exists and is not a directory")
    items = read_corpus(format, input)[:limit]
    mine = [it for it in items if shard_of(it.id, num_shards) == shard_index]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BridgeError(f"{out}: cannot create the store ({e.strerror})") from None
    with _lock_writer(out, shard_index, num_shards) as lock:
        _check_untrained_store(out, str(weights))
        codec = load_codec(model, weights, seed=seed, device=device, store=out)
        codec.set_bandwidth(bandwidth)
        prefix = lock.path.name.removeprefix(".writer-").removesuffix(".lock")
        remove_stale_tmp(out, prefix=f"{prefix}-part")
        stored, skipped = _open_store(out, codec, format, input), _Skipped(out, max_seconds)
        todo = [it for it in mine if it.id not in stored and it not in skipped]
        run = Run(
            codec,
            out,
            prefix,
            max_seconds=max_seconds,
            part_utterances=part_utterances,
            part_seconds=part_seconds,
        )
        run.summary.already = len(mine) - len(todo)
        run.summary.retried = sum((it.id, str(it.path)) in skipped.retried for it in todo)
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if codec.device.type == "cpu" else 1
        with _stop_on_signal() as stop:
            try:
                run.execute(
                    todo,
                    batch_seconds=batch_seconds,
                    workers=workers,
                    threads=threads,
                    stop=stop,
                    progress=progress,
                )
            except StoreError as e:
                raise BridgeError(str(e)) from None
    if progress:
        print(run.summary.line())
    if run.summary.interrupted:
        raise KeyboardInterrupt
    return run.summary
