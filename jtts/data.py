"""Training data: a code store as length-bucketed, padded, sharded batches.

Why it looks like this:
- XLA compiles one program per input shape, so every batch has one of `len(buckets)` shapes:
  frames padded to a bucket edge, text padded to that bucket's text length, and a fixed row
  count per bucket (`data.batch_frames // edge`, a multiple of the data-parallel size).
- The order of batches is a pure function of (seed, epoch), so the iterator state is two
  integers that go into the checkpoint, and every process computes the same plan without
  talking to the others; each process then reads only the rows its devices hold.
- A training epoch may repeat a rare speaker's utterances (`data.speaker_balance`), counted
  per speaker in `Corpus.summary`.
- Utterances longer than `data.max_frames` are randomly cropped (their EOS is then not a
  target, see `has_eos`) or dropped; texts longer than `model.max_text_len` are dropped. Both
  are counted in `Corpus.summary`.

Batch arrays (global, sharded over rows): cond (a `jtts.conditioning.Cond`: text int32 BxS,
text_mask bool BxS, each other attribute of `model.conditions` as int32 ids B from its record
field, and no rows dropped), codes int32 BxKxT, lengths int32 B (frames), has_eos bool B,
valid bool B (False for filler rows that pad the last batch of a bucket); with
`model.pron_head` also phones int32 BxS (the text's phoneme ids, 0 after them) and phones_ok
bool B (the row has phonemes CTC can emit from its text), and with `data.pron_text` training
batches have "pron_text": ids int32 RxS, mask bool RxS, phones int32 RxS, phones_ok bool R
(text-only rows as long as the batch's text, `jtts.pron_text`). The delay pattern is applied
on device (jtts.loss).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from codec_bridge.format import CodeStore
from jtts import conditioning
from jtts.conditioning import Cond
from jtts.config import Config
from jtts.pronounce import ctc_fits, phoneme_ids
from jtts.spelling import to_units
from jtts.text import get_tokenizer, normalize

if TYPE_CHECKING:
    from jtts.pron_text import PronText

TEXT_ROUND = 16  # text lengths are padded to multiples of this
FRAME_ROUND = 8  # bucket edges (frames) are multiples of this, unless capped by max_frames


def encode_text(text: str, normalizer: str, units: str = "tokens") -> np.ndarray:
    """Text positions the model reads for `text`: normalized Whisper BPE ids + <|endoftext|>,
    as ids or as the bytes of their spellings (`model.text_units`, `jtts.spelling.to_units`).

    The trailing EOT keeps every text non-empty (an all-masked encoder row has no keys to
    attend to) and marks its end. The sampler must encode texts with this same function.
    """
    tok = get_tokenizer("whisper")
    ids = np.asarray([*tok.encode(normalize(text, normalizer)), tok.eot], np.int32)
    return to_units(ids, units)


def phoneme_targets(text: str, normalizer: str, positions: int) -> np.ndarray | None:
    """The phoneme ids a text's `positions` model positions are trained to emit
    (`model.pron_head`), or None where CTC cannot emit them from that many."""
    phones = phoneme_ids(normalize(text, normalizer))
    return phones if ctc_fits(phones, positions) else None


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


@dataclasses.dataclass(frozen=True)
class Bucket:
    frames: int  # T: padded codec frames
    text_len: int  # S: padded text tokens
    rows: int  # B: global batch rows


@dataclasses.dataclass(frozen=True)
class Batch:
    arrays: dict[str, Any]  # global arrays (and the Cond of them), see the module docstring
    ids: tuple[str, ...]  # this process's utterance ids ('' for filler rows), for messages
    bucket: Bucket
    state: dict[str, int]  # iterator state after this batch


class Corpus:
    """A store's utterances after tokenization and filtering, assigned to length buckets."""

    def __init__(self, store: CodeStore, cfg: Config, row_multiple: int):
        self.store = store
        self.cfg = cfg
        d, m = cfg.data, cfg.model
        self.seed = d.seed
        self.max_frames = d.max_frames
        self.eot = int(to_units(np.asarray([get_tokenizer("whisper").eot]), m.text_units)[0])
        self.ids = store.ids
        self.lengths = store.lengths.astype(np.int64)
        attrs = conditioning.attributes(m)
        self.tokens: list[np.ndarray] = []
        # With model.pron_head: each row's phoneme ids, None where CTC cannot emit them.
        self.phones: list[np.ndarray | None] = []
        categories: dict[str, list[int]] = {a.name: [] for a, _ in attrs}
        speakers = []
        for r in store.records():
            self.tokens.append(encode_text(r["text"], d.text_normalizer, m.text_units))
            if m.pron_head:
                self.phones.append(
                    phoneme_targets(r["text"], d.text_normalizer, len(self.tokens[-1]))
                )
            speakers.append(str(r.get("speaker")))
            for a, _ in attrs:
                categories[a.name].append(conditioning.lookup(m, a.name, r[a.field]))
        # Each attribute's id per store row (a category's index in its table of names).
        self.categories = {name: np.asarray(ids, np.int32) for name, ids in categories.items()}
        text_lens = np.array([len(t) for t in self.tokens], np.int64)

        too_long = self.lengths > d.max_frames
        dropped_frames = too_long if d.crop_mode == "drop" else np.zeros_like(too_long)
        dropped_text = text_lens > m.max_text_len
        keep = ~dropped_frames & ~dropped_text
        self.effective = np.minimum(self.lengths, d.max_frames)

        unfit = np.asarray([p is None for p in self.phones], bool)  # empty without pron_head
        self.splits: dict[str, np.ndarray] = {}
        self.counts: dict[str, dict[str, int]] = {}
        for split in ("train", "val") if d.val_fraction > 0 else ("train",):
            idx = store.split_indices(split, d.val_fraction)
            self.splits[split] = idx[keep[idx]]
            self.counts[split] = {
                "utterances": len(idx),
                "kept": int(keep[idx].sum()),
                "cropped": int((too_long & keep)[idx].sum()),
                "dropped_too_many_frames": int(dropped_frames[idx].sum()),
                "dropped_text_too_long": int((dropped_text & ~dropped_frames)[idx].sum()),
            }
            if m.pron_head:
                self.counts[split]["phonemes_unfit"] = int((unfit & keep)[idx].sum())
        if len(self.splits["train"]) == 0:
            raise ValueError(
                f"{store.root}: no training utterances left after the split and length filters "
                f"({self.counts['train']})"
            )

        self.repeats, self.speaker_repeats = _balance(
            np.asarray(speakers), self.splits["train"], d.speaker_balance
        )

        kept = np.flatnonzero(keep)
        self.bucket_of = np.full(len(self.ids), -1, np.int64)
        edges = self._edges(self.effective[kept])
        self.bucket_of[kept] = np.searchsorted(edges, self.effective[kept])
        buckets = []
        for b, edge in enumerate(edges):
            members = kept[self.bucket_of[kept] == b]
            longest = int(text_lens[members].max()) if len(members) else 1
            text_len = min(round_up(longest, TEXT_ROUND), m.max_text_len)
            rows = max(row_multiple, d.batch_frames // edge // row_multiple * row_multiple)
            buckets.append(Bucket(frames=int(edge), text_len=text_len, rows=rows))
        self.buckets = tuple(buckets)
        self._plan_cache: dict[tuple[str, int, bool], list[tuple[int, np.ndarray]]] = {}

    def _edges(self, lengths: np.ndarray) -> np.ndarray:
        """Bucket upper bounds in frames: explicit `bucket_sizes`, else length quantiles."""
        d = self.cfg.data
        top = int(lengths.max())
        if d.bucket_sizes is not None:
            edges = [e for e in d.bucket_sizes if e < top]
            edges.append(min(e for e in (*d.bucket_sizes, d.max_frames) if e >= top))
            return np.array(edges, np.int64)
        qs = np.quantile(lengths, np.arange(1, d.num_buckets + 1) / d.num_buckets)
        edges = np.minimum([round_up(int(np.ceil(q)), FRAME_ROUND) for q in qs], d.max_frames)
        edges[-1] = min(round_up(top, FRAME_ROUND), d.max_frames)
        return np.unique(edges)

    def token_rows(self, split: str) -> set[tuple[int, ...]]:
        """The text positions of every utterance of `split`, to keep other text apart from it."""
        return {tuple(self.tokens[i].tolist()) for i in self.splits.get(split, ())}

    def summary(self) -> dict[str, Any]:
        return {
            "utterances": len(self.ids),
            "splits": self.counts,
            "speaker_repeats": self.speaker_repeats,
            "buckets": [dataclasses.asdict(b) for b in self.buckets],
        }

    def plan(self, split: str, epoch: int, shuffle: bool) -> list[tuple[int, np.ndarray]]:
        """The epoch's batches as (bucket, global rows); row -1 is a filler row.

        Shuffled plans depend only on (seed, epoch); the last batch of a bucket is filled
        up with filler rows rather than dropped, so small data sets still yield batches.
        """
        key = (split, epoch, shuffle)
        plan = self._plan_cache.get(key)
        if plan is None:  # one entry: loaders of two splits may share this corpus
            plan = self._make_plan(split, epoch, shuffle)
            self._plan_cache = {key: plan}
        return plan

    def _make_plan(self, split: str, epoch: int, shuffle: bool) -> list[tuple[int, np.ndarray]]:
        rng = np.random.default_rng([self.seed, epoch])
        idx = self.splits[split]
        if split == "train":
            idx = np.repeat(idx, self.repeats[idx])
        if shuffle:
            idx = rng.permutation(idx)
        batches = []
        for b, bucket in enumerate(self.buckets):
            members = idx[self.bucket_of[idx] == b]
            for start in range(0, len(members), bucket.rows):
                rows = np.full(bucket.rows, -1, np.int64)
                chunk = members[start : start + bucket.rows]
                rows[: len(chunk)] = chunk
                batches.append((b, rows))
        if shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def host_batch(
        self, bucket: Bucket, rows: np.ndarray, epoch: int
    ) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
        """Padded numpy arrays for `rows` (store indices, -1 = filler) of one bucket."""
        n, k = len(rows), int(self.store.meta["n_codebooks"])
        s, t = bucket.text_len, bucket.frames
        text, text_mask = np.zeros((n, s), np.int32), np.zeros((n, s), bool)
        text[:, 0] = self.eot  # filler rows attend to one real key
        text_mask[:, 0] = True
        categories = {name: np.zeros(n, np.int32) for name in self.categories}
        out = {
            "cond": Cond.of_text(text, text_mask, **categories),
            "codes": np.zeros((n, k, t), np.int32),
            "lengths": np.zeros(n, np.int32),
            "has_eos": np.zeros(n, bool),
            "valid": np.zeros(n, bool),
        }
        if self.cfg.model.pron_head:
            out["phones"], out["phones_ok"] = np.zeros((n, s), np.int32), np.zeros(n, bool)
        ids = []
        for j, i in enumerate(int(r) for r in rows):
            if i < 0:
                ids.append("")
                continue
            ids.append(self.ids[i])
            tok = self.tokens[i]
            text[j, : len(tok)] = tok
            text_mask[j, : len(tok)] = True
            if self.cfg.model.pron_head and self.phones[i] is not None:
                out["phones_ok"][j] = True
                out["phones"][j, : len(self.phones[i])] = self.phones[i]
            for name, per_row in self.categories.items():
                categories[name][j] = per_row[i]
            codes_KxT = self.store[i].codes
            length = codes_KxT.shape[1]
            if length > self.max_frames:
                rng = np.random.default_rng([self.seed, epoch, i])
                start = int(rng.integers(0, length - self.max_frames + 1))
                codes_KxT = codes_KxT[:, start : start + self.max_frames]
            out["codes"][j, :, : codes_KxT.shape[1]] = codes_KxT
            out["lengths"][j] = codes_KxT.shape[1]
            out["has_eos"][j] = length <= self.max_frames
            out["valid"][j] = True
        return out, tuple(ids)

    def code_counts(self, split: str = "train", max_utterances: int = 20000) -> np.ndarray:
        """Counts_KxV of target ids (codes, then EOS at V-1) over up to `max_utterances`.

        Full (uncropped) codes; an EOS is counted for utterances that keep theirs.
        """
        k, c = int(self.store.meta["n_codebooks"]), int(self.store.meta["codebook_size"])
        idx = self.splits[split]
        if len(idx) > max_utterances:
            idx = np.sort(np.random.default_rng(self.seed).choice(idx, max_utterances, False))
        counts = np.zeros((k, c + 1), np.int64)
        for i in idx:
            codes_KxT = self.store[int(i)].codes
            for q in range(k):
                counts[q, :c] += np.bincount(codes_KxT[q], minlength=c)
        counts[:, c] = int((self.lengths[idx] <= self.max_frames).sum())
        return counts


def _balance(
    speakers: np.ndarray, train: np.ndarray, power: float
) -> tuple[np.ndarray, dict[str, int]]:
    """Each store row's repeats per training epoch, and each repeated speaker's factor: a
    speaker with n of the largest speaker's N training utterances repeats round((N/n)**power)."""
    repeats = np.ones(len(speakers), np.int64)
    names, counts = np.unique(speakers[train], return_counts=True)
    factors = {}
    for name, n in zip(names, counts, strict=True):
        k = max(1, round((counts.max() / n) ** power))
        repeats[speakers == name] = k
        if k > 1:
            factors[str(name)] = k
    return repeats, factors


def process_rows(sharding: jax.sharding.Sharding, rows: int) -> slice:
    """The contiguous block of global batch rows that this process's devices hold."""
    index_map = sharding.addressable_devices_indices_map((rows,))
    spans = sorted({(s[0].indices(rows)[0], s[0].indices(rows)[1]) for s in index_map.values()})
    start, stop = spans[0][0], spans[-1][1]
    if sum(b - a for a, b in spans) != stop - start:
        raise ValueError(f"this process's batch rows are not contiguous: {spans}")
    return slice(start, stop)


_END = object()


class Loader:
    """Iterator of device `Batch`es over one split, prefetched by a background thread.

    `state()` is the iterator state after the last batch returned by `next`; building a
    Loader with that state continues with exactly the batch that would have come next.
    `epochs=None` loops forever (training); `epochs=1` is one pass (evaluation). With
    `pron_text` each batch also carries "pron_text": its rows of text-only lines for the
    phoneme head, drawn by the batch's place in the plan.
    """

    def __init__(
        self,
        corpus: Corpus,
        split: str,
        sharding: jax.sharding.Sharding,
        *,
        shuffle: bool = True,
        epochs: int | None = None,
        prefetch: int = 2,
        state: dict[str, int] | None = None,
        pron_text: PronText | None = None,
    ):
        self.corpus, self.split, self.sharding = corpus, split, sharding
        self.pron_text = pron_text
        self.shuffle, self.epochs = shuffle, epochs
        self._state = {"epoch": 0, "position": 0, **(state or {})}
        self._stop = threading.Event()
        self._gen = self._produce(dict(self._state))
        self._queue: queue.Queue | None = None
        if prefetch > 0:
            self._queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(target=self._fill, daemon=True, name="jtts-data")
            self._thread.start()

    def _produce(self, state: dict[str, int]) -> Iterator[Batch]:
        epoch, position = state["epoch"], state["position"]
        while self.epochs is None or epoch < self.epochs:
            plan = self.corpus.plan(self.split, epoch, self.shuffle)
            while position < len(plan):
                b, rows = plan[position]
                bucket = self.corpus.buckets[b]
                local = rows[process_rows(self.sharding, bucket.rows)]
                arrays, ids = self.corpus.host_batch(bucket, local, epoch)
                arrays = self._global(arrays, bucket.rows)
                if self.pron_text is not None:
                    t = self.pron_text
                    lines = t.draw(epoch, position, bucket.text_len)
                    lines = lines[process_rows(self.sharding, t.rows)]
                    arrays["pron_text"] = self._global(t.host_rows(lines, bucket.text_len), t.rows)
                position += 1
                yield Batch(arrays, ids, bucket, {"epoch": epoch, "position": position})
            epoch, position = epoch + 1, 0

    def _global(self, host: dict[str, Any], rows: int) -> dict[str, Any]:
        """Global arrays of `rows` rows from this process's rows of them."""
        return jax.tree.map(
            lambda v: jax.make_array_from_process_local_data(
                self.sharding, v, (rows, *v.shape[1:])
            ),
            host,
        )

    def _put(self, item: Any) -> bool:
        """Blocking put that gives up once `close` was called; False then."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self) -> None:
        try:
            for batch in self._gen:
                if not self._put(batch):
                    return
            self._put(_END)
        except Exception as e:  # surfaced to the consumer by __next__
            self._put(e)

    def __iter__(self) -> Loader:
        return self

    def __next__(self) -> Batch:
        if self._queue is None:
            batch = next(self._gen)
        else:
            batch = self._queue.get()
            if batch is _END:
                self._queue.put(_END)
                raise StopIteration
            if isinstance(batch, Exception):
                raise batch
        self._state = batch.state
        return batch

    def state(self) -> dict[str, int]:
        return dict(self._state)

    def close(self) -> None:
        self._stop.set()
        if self._queue is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
