"""The code store: round trips, crash safety, cheap opening and clear errors."""

import errno
import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec_bridge import format as fmt

K = 4


def _meta(**over):
    kw = dict(
        codec="encodec_24khz",
        sample_rate=24000,
        frame_rate=75.0,
        n_codebooks=K,
        codebook_size=1024,
        bandwidth=3.0,
        weights={"kind": "untrained", "seed": 0},
    )
    kw.update(over)
    return fmt.make_meta(**kw)


def _fill(root, name, n, start=0, rng=None, frames=(1, 40)):
    rng = rng or np.random.default_rng(start)
    written = {}
    with fmt.ShardWriter(root, name) as w:
        for i in range(start, start + n):
            codes = rng.integers(0, 1024, (K, int(rng.integers(*frames))), dtype=np.int64)
            w.add(f"utt{i:06d}", codes, text=f"text {i}", speaker=f"s{i % 3}", duration=i / 10)
            written[f"utt{i:06d}"] = codes
    return written


record = st.fixed_dictionaries(
    {
        "text": st.text(max_size=60),
        "normalized": st.text(max_size=60),
        "speaker": st.one_of(st.none(), st.text(min_size=1, max_size=10)),
        "duration": st.floats(0, 1e4, allow_nan=False, width=32),
        "frames": st.integers(1, 50),
        "seed": st.integers(0, 2**31),
    }
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(record, min_size=1, max_size=12), n_shards=st.integers(1, 3))
def test_round_trip(tmp_path_factory, records, n_shards):
    root = fmt.init_store(tmp_path_factory.mktemp("store"), _meta())
    expect = {}
    for s in range(n_shards):
        with fmt.ShardWriter(root, f"shard{s}") as w:
            for j, r in enumerate(records):
                codes = np.random.default_rng(r["seed"]).integers(0, 1024, (K, r["frames"]))
                uid = f"{s}-{j}"
                w.add(
                    uid,
                    codes,
                    text=r["text"],
                    normalized=r["normalized"],
                    speaker=r["speaker"],
                    path=f"/x/{uid}.wav",
                    duration=r["duration"],
                )
                expect[uid] = (r, codes)
    store = fmt.CodeStore.open(root)
    assert len(store) == len(expect) and sorted(store.ids) == sorted(expect)
    np.testing.assert_array_equal(store.lengths, [expect[u][0]["frames"] for u in store.ids])
    for uid, (r, codes) in expect.items():
        u = store.get(uid)
        assert (u.id, u.text, u.normalized, u.speaker) == (
            uid,
            r["text"],
            r["normalized"],
            r["speaker"],
        )
        assert u.duration == pytest.approx(r["duration"])
        assert u.codes.dtype == np.uint16 and u.n_frames == r["frames"]
        np.testing.assert_array_equal(u.codes, codes)
    assert store.verify() == []


def test_random_access_by_index_and_id(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    a = _fill(root, "a", 30)
    b = _fill(root, "b", 20, start=30)
    store = fmt.CodeStore.open(root)
    assert store.ids == list(a) + list(b)
    for i in np.random.default_rng(0).permutation(len(store)):
        np.testing.assert_array_equal(store[int(i)].codes, {**a, **b}[store.ids[i]])
    assert "utt000031" in store and "nope" not in store
    with pytest.raises(KeyError, match="nope"):
        store.get("nope")
    with pytest.raises(IndexError):
        store[50]
    assert store.meta["shards"]["a"]["utterances"] == 30
    assert set(store.meta["shards"]["b"]["sha256"]) == {"codes.npy", "index.npy", "records.jsonl"}


def test_uncommitted_shard_is_invisible_and_exception_discards(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    _fill(root, "a", 3)
    w = fmt.ShardWriter(root, "b")
    w.add("x", np.zeros((K, 5), np.int64), text="x")
    assert len(fmt.CodeStore.open(root)) == 3
    w.commit()
    assert len(fmt.CodeStore.open(root)) == 4
    with pytest.raises(RuntimeError), fmt.ShardWriter(root, "c") as w2:
        w2.add("y", np.zeros((K, 5), np.int64), text="y")
        raise RuntimeError
    assert len(fmt.CodeStore.open(root)) == 4
    assert not list((root / "shards").glob(".tmp-*"))


def test_kill_mid_write_loses_nothing_committed(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from codec_bridge import format as fmt
        with fmt.ShardWriter({str(root)!r}, "part0") as w:
            for i in range(10):
                w.add(f"c{{i}}", np.full(({K}, 7), i), text="committed")
        w = fmt.ShardWriter({str(root)!r}, "part1")
        for i in range(1000):
            w.add(f"u{{i}}", np.full(({K}, 7), 1), text="lost")
            if i == 500:
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    assert len(list((root / "shards").glob(".tmp-part1-*"))) == 1
    store = fmt.CodeStore.open(root)
    assert store.ids == [f"c{i}" for i in range(10)]
    assert all(store.get(f"c{i}").codes.max() == i for i in range(10))
    assert store.verify() == []
    other = fmt.ShardWriter(root, "other-part0")  # another writer, still running
    assert fmt.remove_stale_tmp(root, prefix="part1") == 1
    assert [p.name for p in (root / "shards").glob(".tmp-*")] == [other.tmp.name]
    other.discard()
    assert not list((root / "shards").glob(".tmp-*"))


def _open_peak(root) -> int:
    tracemalloc.start()
    store = fmt.CodeStore.open(root)
    n = len(store)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n > 0
    return peak


def test_opening_cost_does_not_grow_with_size(tmp_path):
    small = fmt.init_store(tmp_path / "small", _meta())
    big = fmt.init_store(tmp_path / "big", _meta())
    for s in range(2):
        _fill(small, f"p{s}", 50, start=s * 50, frames=(1, 4))
        _fill(big, f"p{s}", 20_000, start=s * 20_000, frames=(1, 4))
    small_peak, big_peak = _open_peak(small), _open_peak(big)
    assert big_peak < 1.5 * small_peak + 16_384, (small_peak, big_peak)
    store = fmt.CodeStore.open(big)
    tracemalloc.start()
    lengths = store.lengths
    lengths_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(lengths) == 40_000
    assert lengths_peak < 3 * lengths.nbytes + 65_536  # no codes or records were read


def test_split_is_a_function_of_the_id():
    ids = [f"LJ{i:03d}-{j:04d}" for i in range(5) for j in range(400)]
    val = [u for u in ids if fmt.split_of(u, 0.1) == "val"]
    assert 0.07 < len(val) / len(ids) < 0.13
    # The same in another process with another hash seed: nothing depends on Python's hash().
    code = (
        "import json, sys; from codec_bridge.format import split_of;"
        "ids = json.load(sys.stdin); print(json.dumps([u for u in ids if split_of(u, 0.1) == 'val']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(ids),
        text=True,
        capture_output=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    )
    assert json.loads(out.stdout) == val
    assert all(fmt.split_of(u, 0.0) == "train" for u in ids)
    assert all(fmt.split_of(u, 1.0) == "val" for u in ids)


def test_split_indices(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    _fill(root, "a", 200)
    store = fmt.CodeStore.open(root)
    tr, va = store.split_indices("train", 0.2), store.split_indices("val", 0.2)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(200))
    assert all(fmt.split_of(store.ids[i], 0.2) == "val" for i in va)


def test_missing_directory_and_meta(tmp_path):
    with pytest.raises(fmt.StoreError, match="does not exist"):
        fmt.CodeStore.open(tmp_path / "nope")
    with pytest.raises(fmt.StoreError, match="meta.json: file is missing"):
        fmt.CodeStore.open(tmp_path)


def test_truncated_shard_names_the_file(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    _fill(root, "a", 5)
    codes = root / "shards" / "a" / "codes.npy"
    codes.write_bytes(codes.read_bytes()[:-10])
    with pytest.raises(fmt.StoreError, match=r"shards/a/codes.npy: truncated"):
        fmt.CodeStore.open(root)


def test_checksum_mismatch_names_the_file(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    _fill(root, "a", 5)
    codes = root / "shards" / "a" / "codes.npy"
    data = bytearray(codes.read_bytes())
    data[-1] ^= 0xFF
    codes.write_bytes(bytes(data))
    problems = fmt.CodeStore.open(root).verify()
    assert len(problems) == 1 and "shards/a/codes.npy: checksum mismatch" in problems[0]


def test_unknown_format_version(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    meta = json.loads((root / "meta.json").read_text())
    meta["format_version"] = 99
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(fmt.StoreError, match=r"meta.json: format version 99 is not supported"):
        fmt.CodeStore.open(root)


def test_unknown_shard_version(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    _fill(root, "a", 2)
    man = root / "shards" / "a" / "manifest.json"
    man.write_text(man.read_text().replace('"format_version": 1', '"format_version": 7'))
    with pytest.raises(fmt.StoreError, match=r"a/manifest.json: format version 7"):
        fmt.CodeStore.open(root)


def test_writers_must_agree_on_codec(tmp_path):
    fmt.init_store(tmp_path, _meta())
    fmt.init_store(tmp_path, _meta())  # same settings: joins
    with pytest.raises(fmt.StoreError, match="n_codebooks: store has 4, writer has 8"):
        fmt.init_store(tmp_path, _meta(n_codebooks=8))


def test_bad_records_are_rejected(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    w = fmt.ShardWriter(root, "a")
    with pytest.raises(fmt.StoreError, match=r"u1: codes have shape \(3, 5\)"):
        w.add("u1", np.zeros((3, 5)), text="")
    with pytest.raises(fmt.StoreError, match="u2: codes outside"):
        w.add("u2", np.full((K, 5), 1024), text="")
    with pytest.raises(fmt.StoreError, match="u3: codes have no frames"):
        w.add("u3", np.zeros((K, 0)), text="")
    w.add("u4", np.zeros((K, 5)), text="")
    with pytest.raises(fmt.StoreError, match="u4: id added twice"):
        w.add("u4", np.zeros((K, 5)), text="")
    w.discard()
    with pytest.raises(fmt.StoreError, match="does not fit"):
        _meta(codebook_size=70_000)


def test_duplicate_ids_across_shards_are_reported_and_refused(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    _fill(root, "a", 3)
    _fill(root, "b", 3)
    problems = fmt.CodeStore.open(root).verify()
    assert len(problems) == 3 and "'utt000000' is stored twice (shards a, b)" in problems[0]
    with pytest.raises(fmt.StoreError, match=r"stored twice \(shards a, b\); delete all but one"):
        len(fmt.CodeStore.open(root).ids)  # training reads the ids first: it refuses the store


class _FullDisk:
    """A file whose writes fail like a full disk."""

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        pass


def test_a_failed_write_discards_the_part_in_one_line(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    w = fmt.ShardWriter(root, "a")
    w.add("u1", np.zeros((K, 5)), text="x")
    w._codes = _FullDisk()
    with pytest.raises(fmt.NoSpaceError, match=r"\.tmp-a-\w+: no space left on device \(.* free\)"):
        w.add("u2", np.zeros((K, 5)), text="y")
    assert not list((root / "shards").iterdir()) and len(fmt.CodeStore.open(root)) == 0


def test_file_stems_of_ids_are_plain_and_unique():
    assert fmt.file_stem("LJ001-0001") == "LJ001-0001"  # plain ids are their own names
    odd = ["spk/sub/utt1", "spk_sub_utt1~x", "../../x", "..", ".hidden", "a\x00b", "", "é" * 300]
    stems = [fmt.file_stem(u) for u in odd]
    assert stems[0].startswith("spk_sub_utt1~") and stems[2].startswith("x~")
    assert len(set(stems + ["spk_sub_utt1"])) == len(odd) + 1
    for s in stems:
        assert "/" not in s and "\x00" not in s and not s.startswith(".") and len(s) <= 100


@given(st.lists(st.text(max_size=30), min_size=2, max_size=20, unique=True))
def test_file_stems_never_collide_or_leave_the_folder(ids):
    stems = [fmt.file_stem(u) for u in ids]
    assert len(set(stems)) == len(ids)
    assert all("/" not in s and s not in ("", ".", "..") for s in stems)


def test_codes_file_round_trip(tmp_path):
    codes = np.random.default_rng(0).integers(0, 1024, (K, 33))
    fmt.save_codes(tmp_path / "x.npy", codes, _meta())
    back, meta = fmt.load_codes(tmp_path / "x.npy")
    np.testing.assert_array_equal(back, codes)
    assert meta["n_codebooks"] == K
    np.save(tmp_path / "y.npy", codes)
    assert fmt.load_codes(tmp_path / "y.npy")[1] is None
    with pytest.raises(fmt.StoreError, match="z.npy: cannot read codes"):
        fmt.load_codes(tmp_path / "z.npy")


def test_skipped_entries(tmp_path):
    root = fmt.init_store(tmp_path, _meta())
    fmt.append_skipped(root, [{"id": "a", "path": "/a.wav", "reason": "empty file"}])
    fmt.append_skipped(root, [])
    assert fmt.CodeStore.open(root).skipped() == [
        {"id": "a", "path": "/a.wav", "reason": "empty file"}
    ]


def test_weights_file_is_the_file_a_store_meta_names(tmp_path):
    weights_file = fmt.weights_file
    assert weights_file({"weights": {"kind": "pretrained"}}) is None
    assert weights_file({"weights": {"kind": "file", "path": "/c/w.pt"}}) == Path("/c/w.pt")
    kept = {"kind": "untrained", "seed": 0, "file": "codec_weights.pt"}
    meta = {"weights": kept, "store_dir": str(tmp_path)}
    assert weights_file(meta) == tmp_path / "codec_weights.pt"
    absolute = {**meta, "weights": {**kept, "file": "/elsewhere/w.pt"}}
    assert weights_file(absolute) == Path("/elsewhere/w.pt")
    with pytest.raises(fmt.StoreError, match="names no codec weights file"):
        weights_file({"weights": {"kind": "untrained", "seed": 0}})


def test_codec_settings_compare_weights_by_content_not_place():
    meta = _meta(weights={"kind": "file", "path": "/a/codec.pt", "sha256": "ab"})
    copy = {**meta, "weights": {"kind": "file", "path": "codec.pt", "sha256": "ab"}, "created": 0}
    assert fmt.codec_settings(copy) == fmt.codec_settings(meta)
    for key, value in (("bandwidth", 6.0), ("sample_rate", 16000), ("weights", {"sha256": "cd"})):
        other = {**meta, key: {**meta["weights"], **value} if key == "weights" else value}
        assert fmt.codec_settings(other) != fmt.codec_settings(meta), key
