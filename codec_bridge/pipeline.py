"""One extraction run: triage, read ahead, encode in parallel, write parts in order.

Reader threads load and resample audio for upcoming batches while encoder threads encode
earlier ones, so the codec never waits for the disk. On a CPU, ``threads`` batches are
encoded side by side, each on ``cores / threads`` intra-op threads. The default, one
single-threaded encoder per core, beat one encoder on both cores of a 2-core machine (59x vs
43x real time, bench/extract.py), stays fast when other processes compete for the cores
(where every OpenMP barrier of a multi-threaded op waits for a descheduled thread), and
scales to many cores. Results are written in batch order, so parts do not depend on timing.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec_bridge.audio import Skip, load, probe_seconds
from codec_bridge.codec import Codec
from codec_bridge.format import NoSpaceError, ShardWriter, StoreError, append_skipped, size_text
from codec_bridge.progress import progress_bar
from codec_bridge.readers import Item

PREFETCH_BATCHES = 2  # batches read ahead beyond those being encoded


@dataclass
class Summary:
    """What one `extract` call did."""

    store: Path
    stored: int = 0
    skipped: int = 0
    already: int = 0
    retried: int = 0  # of those, inputs skipped as too long for an earlier, lower --max-seconds
    seconds: float = 0.0
    wall: float = 0.0
    interrupted: bool = False
    parts: list[str] = field(default_factory=list)

    @property
    def xrt(self) -> float:
        return self.seconds / self.wall if self.wall > 0 else 0.0

    def line(self) -> str:
        head = "interrupted after storing" if self.interrupted else "stored"
        return (
            f"codec_bridge: {head} {self.stored} utterances ({self.seconds / 3600:.3f} h of audio,"
            f" {self.wall:.1f} s, {self.xrt:.1f}x real time), skipped {self.skipped}"
            f" (see {self.store / 'skipped.jsonl'}), {self.already} done by earlier runs"
            + (f", {self.retried} retried with the higher --max-seconds" if self.retried else "")
        )


@dataclass
class _Job:
    item: Item
    seconds: float


@dataclass
class _Encoded:
    job: _Job
    codes: np.ndarray | None = None
    seconds: float = 0.0
    skip: str | None = None


def batches(jobs: list[_Job], batch_seconds: float) -> Iterator[list[_Job]]:
    """Longest first, each batch at most ``batch_seconds`` of audio once zero-padded."""
    batch: list[_Job] = []
    for job in sorted(jobs, key=lambda j: (-j.seconds, j.item.id)):
        if batch and (len(batch) + 1) * batch[0].seconds > batch_seconds:
            yield batch
            batch = []
        batch.append(job)
    if batch:
        yield batch


def _next_part(out: Path, prefix: str) -> int:
    parts = [p.name.rpartition("-part")[2] for p in (out / "shards").glob(f"{prefix}-part*")]
    return max((int(k) for k in parts if k.isdigit()), default=0) + 1


class Run:
    """One extraction into one store: the open shard part, pending skips and the counts.

    A part is committed every ``part_utterances`` utterances or ``part_seconds`` of audio;
    skips are appended to skipped.jsonl when a part commits (a skip lost in a crash is simply
    found again on resume, so none is recorded twice)."""

    def __init__(
        self,
        codec: Codec,
        out: Path,
        prefix: str,
        *,
        max_seconds: float,
        part_utterances: int,
        part_seconds: float,
    ):
        self.codec, self.out, self.prefix = codec, out, prefix
        self.max_seconds = max_seconds
        self.part_utterances, self.part_seconds = part_utterances, part_seconds
        self.summary = Summary(out)
        self.writer: ShardWriter | None = None
        self.part_audio = 0.0
        self.pending_skips: list[dict] = []

    def skip(self, item: Item, reason: str, **detail) -> None:
        """Record why ``item`` is skipped; ``detail`` (``seconds``, ``text``) lets a later run
        tell which skips still hold."""
        entry = {"id": item.id, "path": str(item.path), "reason": reason, **detail}
        self.pending_skips.append(entry)
        self.summary.skipped += 1

    def triage(self, items: list[Item], readers: ThreadPoolExecutor) -> list[_Job]:
        """Skip what needs no audio to reject (no transcript, duplicate id, unreadable header,
        too long) and learn every other utterance's duration, for batching."""
        seen: dict[str, Item] = {}
        candidates = []
        for it in items:
            if it.id in seen:
                first = seen[it.id]
                if it.path != first.path:
                    self.skip(it, f"duplicate id (also {first.path})")
                elif it.text != first.text:  # the very same entry twice is simply dropped
                    self.skip(it, "duplicate id (same audio, other text)", text=it.text)
            elif it.text is None:
                self.skip(it, "audio without transcript")
            elif not it.text.strip():
                self.skip(it, "empty transcript")
            else:
                candidates.append(it)
            seen.setdefault(it.id, it)

        def probe(it: Item) -> float | str:
            try:
                return probe_seconds(it.path)
            except Skip as e:
                return str(e)

        jobs = []
        for it, seconds in zip(candidates, readers.map(probe, candidates), strict=True):
            if isinstance(seconds, str):
                self.skip(it, seconds)
            elif seconds > self.max_seconds:
                why = f"too long ({seconds:.1f} s > --max-seconds {self.max_seconds:g})"
                self.skip(it, why, seconds=round(seconds, 3))
            else:
                jobs.append(_Job(it, seconds))
        return jobs

    def _load(self, job: _Job):
        c = self.codec
        try:
            return load(
                job.item.path,
                c.sample_rate,
                c.channels,
                max_seconds=self.max_seconds,
                min_samples=c.hop,
            )
        except Skip as e:
            return e

    def _encode(self, batch: list[_Job], loads: list[Future]) -> list[_Encoded]:
        """Runs in an encoder thread: wait for the batch's audio, encode what loaded."""
        results = [_Encoded(job) for job in batch]
        good = []
        for res, f in zip(results, loads, strict=True):
            wav = f.result()
            if isinstance(wav, Skip):
                res.skip = str(wav)
            else:
                res.seconds = wav.shape[-1] / self.codec.sample_rate
                good.append((res, wav))
        for (res, _), codes in zip(good, self.codec.encode([w for _, w in good]), strict=True):
            res.codes = codes
        return results

    def execute(
        self,
        items: list[Item],
        *,
        batch_seconds: float,
        workers: int,
        threads: int,
        stop: threading.Event,
        progress: bool,
    ) -> None:
        """Triage ``items``, then encode and write them all; stops early (committing what is
        written) when ``stop`` is set."""
        own_threads = torch.get_num_threads()
        cores = len(os.sched_getaffinity(0))
        per_batch = max(1, cores // threads) if self.codec.device.type == "cpu" else own_threads
        # Readers resample with torch too: one intra-op thread each, so nothing oversubscribes.
        readers = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,))
        encoders = ThreadPoolExecutor(
            threads, initializer=torch.set_num_threads, initargs=(per_batch,)
        )
        jobs: list[_Job] = []
        try:
            jobs = self.triage(items, readers)
            self._encode_all(jobs, batch_seconds, readers, encoders, threads, stop, progress)
        except NoSpaceError as e:
            left = sum(j.seconds for j in jobs) - self.summary.seconds
            need = left * self.codec.sample_rate / self.codec.hop * self.codec.n_codebooks * 2
            raise NoSpaceError(
                f"{e}; the {left / 3600:.3f} h of audio left need about {size_text(need)} of"
                " codes: free some space and re-run to resume"
            ) from None
        finally:
            encoders.shutdown(wait=True, cancel_futures=True)
            readers.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(own_threads)

    def _encode_all(self, jobs, batch_seconds, readers, encoders, threads, stop, progress) -> None:
        bar = progress_bar(
            total=sum(j.seconds for j in jobs) / 3600,
            unit="h",
            disable=not progress,
            bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} h [{elapsed}<{remaining}{postfix}]",
        )
        window: deque[tuple[list[_Job], Future]] = deque()
        start = time.perf_counter()
        finished = False
        try:
            for batch in batches(jobs, batch_seconds):
                loads = [readers.submit(self._load, j) for j in batch]
                window.append((batch, encoders.submit(self._encode, batch, loads)))
                if len(window) > threads + PREFETCH_BATCHES:
                    self._write(*window.popleft(), bar, start)
                if stop.is_set():
                    break
            while window and not stop.is_set():
                self._write(*window.popleft(), bar, start)
            finished = not window
        finally:
            unfinished = [(b, f) for b, f in window if not f.cancel()]
            encoders.shutdown(wait=True)
            if stop.is_set():  # keep what the encoder threads had already started
                for batch, fut in unfinished:
                    if fut.exception() is None:
                        self._write(batch, fut, bar, start)
            self.summary.interrupted = not finished
            self.summary.wall = time.perf_counter() - start
            self._commit()
            bar.close()

    def _write(self, batch: list[_Job], fut: Future, bar, start: float) -> None:
        for res in fut.result():
            if res.skip is not None:
                self.skip(res.job.item, res.skip)
            else:
                self._add(res.job.item, res.codes, res.seconds)
        bar.n = min(bar.n + sum(j.seconds for j in batch) / 3600, bar.total)
        elapsed = time.perf_counter() - start
        bar.set_postfix_str(f"{self.summary.seconds / max(elapsed, 1e-9):.1f}x real time")

    def _add(self, item: Item, codes: np.ndarray, seconds: float) -> None:
        if self.writer is None:
            name = f"{self.prefix}-part{_next_part(self.out, self.prefix):05d}"
            self.writer = ShardWriter(self.out, name)
            self.part_audio = 0.0
        try:
            self.writer.add(
                item.id,
                codes,
                text=item.text,
                normalized=item.normalized,
                speaker=item.speaker,
                path=str(item.path),
                duration=seconds,
            )
        except StoreError:
            self.writer = None  # a failed write discarded the part
            raise
        self.summary.stored += 1
        self.summary.seconds += seconds
        self.part_audio += seconds
        if len(self.writer) >= self.part_utterances or self.part_audio >= self.part_seconds:
            self._commit()

    def _commit(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            if len(writer):
                self.summary.parts.append(writer.commit().name)  # a failure discards it
            else:
                writer.discard()
        append_skipped(self.out, self.pending_skips)
        self.pending_skips = []
