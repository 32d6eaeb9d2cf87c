"""Data pipeline: fixed shapes, coverage, determinism, exact resume, crop/drop, sharding."""

import collections
from pathlib import Path

import jax
import numpy as np
import pytest
from synthetic import PRON, make_store

from codec_bridge.format import CodeStore, split_of
from jtts.config import apply_overrides, load_config
from jtts.data import Corpus, Loader, encode_text, process_rows
from jtts.mesh import batch_sharding, make_mesh
from jtts.pron_text import PronText
from jtts.pronounce import ctc_fits, phoneme_ids
from jtts.text import get_tokenizer, normalize

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "store"
    return CodeStore.open(make_store(path, 60, frames=(10, 300)))


def tiny(*overrides):
    base = ["data.max_frames=200", "data.batch_frames=600", "data.num_buckets=3"]
    return apply_overrides(load_config(CONFIGS / "tiny.yaml"), [*base, *overrides])


@pytest.fixture(scope="module")
def one_device():
    return batch_sharding(make_mesh(tiny().train.mesh, jax.devices()[:1]))


def take(loader, n):
    out = [next(loader) for _ in range(n)]
    loader.close()
    return out


def host(batch):
    """Host copies, with the condition's text and mask under "text" and "text_mask"."""
    a = {k: np.asarray(v) for k, v in batch.arrays.items() if k != "cond"}
    cond = batch.arrays["cond"]
    assert not np.asarray(cond.drop_B).any()
    return {**a, "text": np.asarray(cond.text_BxS), "text_mask": np.asarray(cond.text_mask_BxS)}


def test_encode_text_normalizes_and_ends_with_eot():
    tok = get_tokenizer("whisper")
    ids = encode_text("Hello, WORLD!", "whisper_english")
    assert ids.dtype == np.int32 and ids[-1] == tok.eot
    assert list(ids[:-1]) == tok.encode("hello world")
    assert list(encode_text("", "nfkc")) == [tok.eot]


def test_batches_have_one_of_few_fixed_shapes(store, one_device):
    cfg = tiny()
    corpus = Corpus(store, cfg, row_multiple=2)
    assert 1 <= len(corpus.buckets) <= 3
    for b in corpus.buckets:
        assert b.rows % 2 == 0 and b.rows >= 2
        assert b.frames <= cfg.data.max_frames and b.text_len % 16 == 0
    shapes = set()
    n = len(corpus.plan("train", 0, True))
    for batch in take(Loader(corpus, "train", one_device, epochs=1, prefetch=0), n):
        a, b = host(batch), batch.bucket
        assert a["codes"].shape == (b.rows, 8, b.frames) and a["text"].shape == (b.rows, b.text_len)
        shapes.add(a["codes"].shape + a["text"].shape)
        for j, utt_id in enumerate(batch.ids):
            if not utt_id:
                assert not a["valid"][j]
                continue
            length = a["lengths"][j]
            assert (a["codes"][j, :, length:] == 0).all()
            i = store.ids.index(utt_id)
            tokens = corpus.tokens[i]
            assert (a["text"][j, : len(tokens)] == tokens).all()
            assert a["text_mask"][j].sum() == len(tokens)
            if store.lengths[i] <= cfg.data.max_frames:
                assert length == store.lengths[i] and a["has_eos"][j]
                assert (a["codes"][j, :, :length] == store[i].codes).all()
    assert len(shapes) == len(corpus.buckets)


def test_one_epoch_covers_the_train_split_exactly_once(store, one_device):
    cfg = tiny()
    corpus = Corpus(store, cfg, row_multiple=1)
    ids = [i for b in Loader(corpus, "train", one_device, epochs=1, prefetch=2) for i in b.ids]
    real = [i for i in ids if i]
    assert sorted(real) == sorted(store.ids[i] for i in corpus.splits["train"])
    assert all(split_of(i, cfg.data.val_fraction) == "train" for i in real)
    assert len(real) == len(set(real))


def test_plan_depends_only_on_seed_and_epoch(store):
    a, b = Corpus(store, tiny(), 1), Corpus(store, tiny(), 1)
    same = [(x[0], list(x[1])) for x in a.plan("train", 3, True)]
    assert same == [(x[0], list(x[1])) for x in b.plan("train", 3, True)]
    other = [(x[0], list(x[1])) for x in a.plan("train", 4, True)]
    assert same != other
    reseeded = Corpus(store, tiny("data.seed=1"), 1)
    assert same != [(x[0], list(x[1])) for x in reseeded.plan("train", 3, True)]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_restoring_the_state_continues_exactly(store, one_device, prefetch):
    corpus = Corpus(store, tiny(), row_multiple=1)
    per_epoch = len(corpus.plan("train", 0, True))
    total = per_epoch + 3  # crosses an epoch boundary
    full = take(Loader(corpus, "train", one_device, prefetch=prefetch), total)
    cut = per_epoch - 2
    state = full[cut - 1].state
    assert state == {"epoch": 0, "position": cut}
    rest = take(Loader(corpus, "train", one_device, prefetch=prefetch, state=state), total - cut)
    for x, y in zip(full[cut:], rest, strict=True):
        assert x.ids == y.ids and x.state == y.state
        for a, b in zip(jax.tree.leaves(x.arrays), jax.tree.leaves(y.arrays), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert rest[-1].state["epoch"] == 1


def test_crop_keeps_a_window_without_eos_and_counts_it(store, one_device):
    cfg = tiny("data.max_frames=100", "data.batch_frames=400")
    corpus = Corpus(store, cfg, row_multiple=1)
    long = int((store.lengths > 100).sum())
    counts = corpus.counts
    assert counts["train"]["cropped"] + counts["val"]["cropped"] == long > 0
    seen = 0
    for batch in Loader(corpus, "train", one_device, epochs=1, prefetch=0):
        a = host(batch)
        for j, utt_id in enumerate(batch.ids):
            if utt_id and store.get(utt_id).n_frames > 100:
                seen += 1
                full = store.get(utt_id).codes
                window = a["codes"][j]
                assert a["lengths"][j] == 100 and not a["has_eos"][j]
                starts = [
                    s for s in range(full.shape[1] - 99) if (full[:, s : s + 100] == window).all()
                ]
                assert starts
    assert seen == counts["train"]["cropped"]


def test_drop_mode_and_long_texts_are_dropped_and_counted(store):
    corpus = Corpus(store, tiny("data.max_frames=100", "data.crop_mode=drop"), row_multiple=1)
    long = int((store.lengths > 100).sum())
    c = corpus.counts
    assert c["train"]["dropped_too_many_frames"] + c["val"]["dropped_too_many_frames"] == long
    kept = np.concatenate([corpus.splits["train"], corpus.splits["val"]])
    assert (store.lengths[kept] <= 100).all()

    short_text = Corpus(store, tiny("model.max_text_len=8"), row_multiple=1)
    too_long = sum(len(t) > 8 for t in short_text.tokens)
    dropped = sum(v["dropped_text_too_long"] for v in short_text.counts.values())
    assert dropped == too_long > 0


def test_val_split_follows_split_of_and_can_be_disabled(store):
    corpus = Corpus(store, tiny("data.val_fraction=0.3"), row_multiple=1)
    val_ids = {store.ids[i] for i in corpus.splits["val"]}
    assert val_ids == {u for u in store.ids if split_of(u, 0.3) == "val"}
    assert not val_ids & {store.ids[i] for i in corpus.splits["train"]}
    assert "val" not in Corpus(store, tiny("data.val_fraction=0"), row_multiple=1).splits


def test_code_counts_count_every_code_and_each_eos(store):
    corpus = Corpus(store, tiny(), row_multiple=1)
    counts = corpus.code_counts("train")
    idx = corpus.splits["train"]
    assert counts.shape == (8, 1025)
    np.testing.assert_array_equal(counts[:, :1024].sum(axis=1), store.lengths[idx].sum())
    assert counts[0, 1024] == (store.lengths[idx] <= 200).sum()


def test_batches_are_sharded_over_data_and_fsdp(store):
    mesh = make_mesh(tiny("train.mesh.data=2", "train.mesh.fsdp=4").train.mesh)
    sharding = batch_sharding(mesh)
    corpus = Corpus(store, tiny(), row_multiple=8)
    batch = take(Loader(corpus, "train", sharding, prefetch=1), 1)[0]
    codes = batch.arrays["codes"]
    assert codes.sharding == sharding and codes.shape[0] % 8 == 0
    assert len(codes.addressable_shards) == 8
    assert {s.data.shape[0] for s in codes.addressable_shards} == {codes.shape[0] // 8}
    assert process_rows(sharding, codes.shape[0]) == slice(0, codes.shape[0])


def test_errors_in_the_prefetch_thread_reach_the_consumer(store, one_device):
    corpus = Corpus(store, tiny(), row_multiple=1)

    def broken(*args):
        raise OSError("disk gone")

    corpus.host_batch = broken
    with Loader(corpus, "train", one_device, prefetch=2) as loader, pytest.raises(OSError):
        next(loader)


def test_speaker_balance_repeats_a_rare_speakers_utterances(tmp_path):
    """48 of alice's utterances and 12 of bob's: with balance 1 an epoch holds each of bob's
    training rows (48/n_bob)**1 times, rounded, with 0.5 its square root; alice's once."""
    speakers = ["alice"] * 48 + ["bob"] * 12
    two = CodeStore.open(make_store(tmp_path / "s", 60, frames=(10, 150), speakers=speakers))
    for balance in (0.0, 0.5, 1.0):
        corpus = Corpus(two, tiny(f"data.speaker_balance={balance}"), row_multiple=1)
        train = corpus.splits["train"]
        n_alice = sum(speakers[i] == "alice" for i in train)
        n_bob = len(train) - n_alice
        k = max(1, round((n_alice / n_bob) ** balance))
        rows = np.concatenate([r for _, r in corpus.plan("train", 0, True)])
        seen = collections.Counter(speakers[i] for i in rows if i >= 0)
        assert seen == {"alice": n_alice, "bob": k * n_bob}
        assert corpus.summary()["speaker_repeats"] == ({"bob": k} if k > 1 else {})
        val = np.concatenate([r for _, r in corpus.plan("val", 0, False)])
        assert sorted(i for i in val if i >= 0) == sorted(corpus.splits["val"])
    assert k == round(n_alice / n_bob) > 2


def test_empty_training_split_is_a_clear_error(tmp_path):
    small = CodeStore.open(make_store(tmp_path / "s", 3))
    with pytest.raises(ValueError, match="no training utterances"):
        Corpus(small, tiny("data.max_frames=5", "data.crop_mode=drop"), row_multiple=1)


def test_phoneme_targets_follow_each_row_and_flag_those_that_cannot_fit(store):
    """With model.pron_head each row carries its normalized text's phonemes, or is flagged
    (and counted) where CTC cannot emit them from its bytes; BPE tokens are refused."""
    pytest.importorskip("hibari.g2p")
    texts = {r["id"]: r["text"] for r in store.records()}
    cfg = tiny(*PRON, "model.max_text_len=512")
    corpus = Corpus(store, cfg, 1)
    fitted = []
    for bucket, rows in corpus.plan("train", 0, shuffle=False):
        arrays, ids = corpus.host_batch(corpus.buckets[bucket], rows, 0)
        for j, uid in enumerate(ids):
            if not uid:  # a filler row
                assert not arrays["phones_ok"][j] and not arrays["phones"][j].any()
                continue
            phones = phoneme_ids(normalize(texts[uid], cfg.data.text_normalizer))
            fitted.append(ctc_fits(phones, arrays["cond"].text_mask_BxS[j].sum()))
            assert arrays["phones_ok"][j] == fitted[-1]
            expected = phones if fitted[-1] else phones[:0]
            np.testing.assert_array_equal(arrays["phones"][j, : len(expected)], expected)
            assert not arrays["phones"][j, len(expected) :].any()
    assert len(fitted) == len(corpus.splits["train"]) and np.mean(fitted) > 0.8
    assert corpus.counts["train"]["phonemes_unfit"] == len(fitted) - sum(fitted)
    assert "phones" not in Corpus(store, tiny(), 1).host_batch(corpus.buckets[bucket], rows, 0)[0]
    with pytest.raises(ValueError, match="pron_head needs model.text_units=bytes"):
        tiny("model.pron_head=true")


def test_text_only_rows_ride_with_training_batches_by_their_place_in_the_plan(store, tmp_path):
    """With `data.pron_text` each training batch carries that many text-only rows, as long
    as its text, sharded like its other rows and drawn by the batch's (epoch, position): a
    restored loader carries the same ones."""
    pytest.importorskip("hibari.g2p")
    path = tmp_path / "lines.txt"
    path.write_text("The cat sat.\nDogs bark at night.\nA bird sings.\n", encoding="utf-8")
    cfg = tiny(*PRON, "model.max_text_len=512", f"data.pron_text={path}", "data.pron_rows=5")
    sharding = batch_sharding(make_mesh(tiny("train.mesh.data=2", "train.mesh.fsdp=4").train.mesh))
    corpus = Corpus(store, cfg, row_multiple=8)
    text_lens = [b.text_len for b in corpus.buckets]
    pron_text = PronText(cfg, 8, text_lens, held_out=corpus.token_rows("val"))
    batches = take(Loader(corpus, "train", sharding, prefetch=1, pron_text=pron_text), 4)
    seen = set()  # text lengths: the rows follow their batch's, not one length
    for batch in batches:
        got = batch.arrays["pron_text"]
        assert got["ids"].sharding == sharding and len(got["ids"].addressable_shards) == 8
        epoch, position = batch.state["epoch"], batch.state["position"] - 1
        text_len = batch.arrays["cond"].text_BxS.shape[1]
        seen.add(text_len)
        want = pron_text.host_rows(pron_text.draw(epoch, position, text_len), text_len)
        assert want["ids"].shape == (8, text_len) and want["phones_ok"].all()
        for key, value in want.items():
            np.testing.assert_array_equal(np.asarray(got[key]), value)
    assert len(seen) > 1, seen
    restored = Loader(corpus, "train", sharding, pron_text=pron_text, state=batches[1].state)
    again = take(restored, 1)[0].arrays["pron_text"]
    np.testing.assert_array_equal(np.asarray(again["ids"]), batches[2].arrays["pron_text"]["ids"])
    val = take(Loader(corpus, "val", sharding, shuffle=False, epochs=1, prefetch=0), 1)[0]
    assert "pron_text" not in val.arrays
