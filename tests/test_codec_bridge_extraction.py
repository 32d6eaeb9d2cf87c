"""Corpus -> store: exact codes, sharding over processes, resuming after kill -9 / Ctrl-C,
and bad input that is skipped with its reason instead of stopping the run."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sandbox
import soundfile as sf
import torch
from encodec import EncodecModel
from encodec.utils import convert_audio

from codec_bridge.cli import main as cli_main
from codec_bridge.codec import load_codec
from codec_bridge.errors import BridgeError
from codec_bridge.extraction import extract, shard_of
from codec_bridge.format import CodeStore
from codec_bridge.lock import holder

FAST = dict(device="cpu", progress=False)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "codec.pt"
    torch.save(load_codec("24khz", "untrained", seed=11, device="cpu").model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def corpora(shared_data):
    return shared_data / "ljspeech_lj001", shared_data / "fsdd_test"


@pytest.fixture(scope="module")
def lj_short(tmp_path_factory, corpora):
    """The 4 shortest LJ Speech clips in their own LJ layout (symlinks, not copies)."""
    root = tmp_path_factory.mktemp("lj_short")
    ids = ["LJ001-0008", "LJ001-0002", "LJ001-0078", "LJ001-0104"]
    lines = (corpora[0] / "metadata.csv").read_text(encoding="utf-8").splitlines()
    (root / "metadata.csv").write_text("\n".join(x for x in lines if x.split("|")[0] in ids) + "\n")
    (root / "wavs").mkdir()
    for uid in ids:
        (root / "wavs" / f"{uid}.wav").symlink_to(corpora[0] / "wavs" / f"{uid}.wav")
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory, corpora, lj_short, weights_file):
    """4 LJ Speech clips (22.05 kHz) and 12 spoken digits (8 kHz) in one store."""
    out = tmp_path_factory.mktemp("store") / "codes"
    extract(lj_short, out, format="ljspeech", weights=weights_file, part_utterances=5, **FAST)
    extract(
        corpora[1], out, format="fsdd", weights=weights_file, limit=12, part_utterances=5, **FAST
    )
    return out


def contents(path: Path) -> dict[str, np.ndarray]:
    cs = CodeStore.open(path)
    assert not cs.verify()
    return {u.id: u.codes for u in (cs[i] for i in range(len(cs)))}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "codec_bridge", "extract", "--device", "cpu", "--quiet", *args]


@pytest.mark.filterwarnings("ignore:.*weight_norm:FutureWarning")
def test_codes_equal_the_encodec_package_file_by_file(store, weights_file):
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    model.set_target_bandwidth(6.0)
    cs = CodeStore.open(store)
    differing = total = 0
    rates = set()
    for i in range(len(cs)):
        utt = cs[i]
        data, sr = sf.read(utt.path, dtype="float32", always_2d=True)
        rates.add(sr)
        with torch.no_grad():
            ((codes, _),) = model.encode(
                convert_audio(torch.from_numpy(data.T), sr, 24000, 1)[None]
            )
        want = codes[0].numpy()
        assert utt.codes.shape == want.shape, utt.id  # exact frame count
        differing += int((utt.codes != want).sum())
        total += want.size
    assert rates == {22050, 8000} and len(cs) == 16
    assert differing <= total / 1000


def test_records_meta_and_parts(store):
    cs = CodeStore.open(store)
    meta = cs.meta
    assert (meta["codec"], meta["sample_rate"], meta["frame_rate"]) == (
        "encodec_24khz",
        24000,
        75.0,
    )
    assert (meta["bandwidth"], meta["n_codebooks"], meta["codebook_size"]) == (6.0, 8, 1024)
    assert meta["weights"]["kind"] == "file" and len(meta["weights"]["sha256"]) == 64
    lj = cs.get("LJ001-0002")
    assert lj.text == lj.normalized == "in being comparatively modern."
    assert lj.speaker == "LJ" and lj.duration == pytest.approx(1.9, abs=0.01)
    digit = cs.get("0_george_1")
    assert (digit.text, digit.speaker) == ("zero", "george")
    assert sorted(meta["shards"]) == [f"00000-of-00001-part{k:05d}" for k in range(1, 5)]


def test_rerun_is_a_no_op(store, corpora, weights_file):
    before = contents(store)
    summary = extract(corpora[1], store, format="fsdd", weights=weights_file, limit=12, **FAST)
    assert (summary.stored, summary.skipped, summary.already) == (0, 0, 12)
    assert contents(store).keys() == before.keys()


def test_shards_split_by_id_hash():
    ids = [f"utt{i}" for i in range(1000)]
    counts = np.bincount([shard_of(u, 4) for u in ids], minlength=4)
    assert counts.sum() == 1000 and counts.min() > 200
    assert [shard_of(u, 4) for u in ids] == [shard_of(u, 4) for u in ids]


def test_two_shard_processes_fill_one_store(tmp_path, store, corpora, weights_file):
    out = tmp_path / "sharded"
    args = ["--format", "fsdd", "--input", str(corpora[1]), "--out", str(out), "--limit", "12"]
    args += ["--weights", str(weights_file), "--num-shards", "2"]
    procs = [subprocess.Popen(cli(*args, "--shard-index", str(i))) for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert sorted(p.name for p in (out / "shards").iterdir()) == [
        "00000-of-00002-part00001",
        "00001-of-00002-part00001",
    ]
    got, want = contents(out), contents(store)
    assert len(got) == 12
    assert all(np.array_equal(got[u], want[u]) for u in got)


@pytest.fixture(scope="module")
def lj6(tmp_path_factory, corpora, weights_file):
    """An uninterrupted run that the interrupted ones must reproduce."""
    out = tmp_path_factory.mktemp("lj6") / "codes"
    extract(corpora[0], out, format="ljspeech", weights=weights_file, limit=6, **FAST)
    return contents(out)


def run_until_first_part(cmd: list[str], out: Path, sig: int) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((out / "shards").glob("00000-of-00001-part*")):
        assert proc.poll() is None and time.monotonic() < deadline, "no part was ever committed"
        time.sleep(0.005)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_run_resumes_to_the_same_store(tmp_path, corpora, weights_file, lj6, sig):
    out = tmp_path / "codes"
    args = ["--format", "ljspeech", "--input", str(corpora[0]), "--out", str(out)]
    args += ["--weights", str(weights_file), "--limit", "6", "--part-utterances", "1"]
    args += ["--batch-seconds", "10", "--threads", "1"]  # one batch at a time: time to interrupt
    done = run_until_first_part(cli(*args), out, sig)
    partial = CodeStore.open(out)
    assert 1 <= len(partial) < 6, "the run finished before it could be interrupted"
    if sig == signal.SIGINT:
        assert done.returncode == 130 and "interrupted" in done.stderr
        assert not list((out / "shards").glob(".tmp-*"))  # committed cleanly
    else:
        assert done.returncode == -signal.SIGKILL
    summary = extract(corpora[0], out, format="ljspeech", weights=weights_file, limit=6, **FAST)
    assert summary.already == len(partial) and summary.stored == 6 - len(partial)
    final = contents(out)
    assert len(CodeStore.open(out).ids) == 6  # every utterance exactly once
    assert final.keys() == lj6.keys()
    assert all(np.array_equal(final[u], lj6[u]) for u in final)


def write_bad_corpus(root: Path, lj: Path) -> dict[str, str]:
    """An LJ Speech layout seeded with every kind of bad input; returns id -> expected reason."""
    wavs = root / "wavs"
    wavs.mkdir(parents=True)
    good = ["LJ001-0002", "LJ001-0008"]
    for uid in good:
        (wavs / f"{uid}.wav").write_bytes((lj / "wavs" / f"{uid}.wav").read_bytes())
    raw = (lj / "wavs" / "LJ001-0004.wav").read_bytes()
    (wavs / "truncated.wav").write_bytes(raw[: len(raw) // 3])
    (wavs / "empty.wav").write_bytes(b"")
    (wavs / "notaudio.wav").write_text("definitely not RIFF\n" * 50)
    (wavs / "untranscribed.wav").write_bytes(raw)
    rng = np.random.default_rng(0)
    sf.write(wavs / "tiny.wav", (0.1 * rng.standard_normal(220)).astype(np.float32), 22050)
    sf.write(wavs / "silent.wav", np.zeros(22050, np.float32), 22050, subtype="PCM_16")
    sf.write(wavs / "long.wav", (0.1 * rng.standard_normal(22050 * 4)).astype(np.float32), 22050)
    sf.write(wavs / "notext.wav", (0.1 * rng.standard_normal(22050)).astype(np.float32), 22050)
    lines = [f"{u}|good text {u}|good text {u}" for u in good]
    lines += [
        f"{u}|text {u}|"
        for u in ("truncated", "empty", "notaudio", "tiny", "silent", "long", "missing")
    ]
    lines.append("notext||")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return {
        "truncated": "truncated audio file",
        "empty": "empty file (0 bytes)",
        "notaudio": "unreadable audio",
        "untranscribed": "audio without transcript",
        "tiny": "too short",
        "silent": "silent",
        "long": "too long (4.0 s > --max-seconds 3)",
        "missing": "transcript without audio",
        "notext": "empty transcript",
    }


def test_bad_files_are_skipped_with_their_reason(tmp_path, corpora, weights_file):
    expected = write_bad_corpus(tmp_path / "corpus", corpora[0])
    out = tmp_path / "codes"
    kw = dict(format="ljspeech", weights=weights_file, max_seconds=3, **FAST)
    summary = extract(tmp_path / "corpus", out, **kw)
    assert (summary.stored, summary.skipped) == (2, len(expected))
    assert sorted(CodeStore.open(out).ids) == ["LJ001-0002", "LJ001-0008"]
    skipped = {s["id"]: s for s in CodeStore.open(out).skipped()}
    assert skipped.keys() == expected.keys()
    for uid, reason in expected.items():
        assert skipped[uid]["reason"].startswith(reason), (uid, skipped[uid])
        assert skipped[uid]["path"].endswith(f"{uid}.wav")
    again = extract(tmp_path / "corpus", out, **kw)
    assert (again.stored, again.skipped, again.already) == (0, 0, 2 + len(expected))
    assert len(CodeStore.open(out).skipped()) == len(expected)  # not recorded twice


def test_untrained_weights_are_saved_with_the_store(tmp_path, corpora, capfd):
    out = tmp_path / "codes"
    extract(corpora[1], out, format="fsdd", weights="untrained", seed=4, limit=3, **FAST)
    assert "UNTRAINED" in capfd.readouterr().err
    weights = CodeStore.open(out).meta["weights"]
    assert (weights["kind"], weights["seed"], weights["file"]) == (
        "untrained",
        4,
        "codec_weights.pt",
    )
    assert (out / "codec_weights.pt").is_file()
    with pytest.raises(BridgeError, match="other settings"):
        extract(corpora[1], out, format="fsdd", weights="untrained", seed=5, limit=3, **FAST)


def test_store_made_with_other_weights_is_refused(store, corpora):
    with pytest.raises(BridgeError, match="not untrained"):
        extract(corpora[1], store, format="fsdd", weights="untrained", limit=1, **FAST)
    assert not (store / "codec_weights.pt").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_shards=2, shard_index=2), "--shard-index 2 must be in [0, --num-shards 2)"),
        (dict(batch_seconds=0), "--batch-seconds 0: must be positive"),
        (dict(format="timit"), "unknown corpus format 'timit'"),
        (dict(model="48khz", bandwidth=1.5), "the encodec_48khz model supports 3, 6, 12, 24"),
    ],
)
def test_bad_arguments_fail_before_writing(tmp_path, corpora, kwargs, message):
    kw = dict(format="fsdd", weights="untrained", **FAST) | kwargs
    with pytest.raises(BridgeError) as e:
        extract(corpora[1], tmp_path / "codes", **kw)
    assert message in str(e.value) and not (tmp_path / "codes").exists()


def test_summary_line(store, corpora, weights_file, capsys):
    extract(corpora[1], store, format="fsdd", weights=weights_file, limit=12, device="cpu")
    line = capsys.readouterr().out.strip()
    assert (
        line.startswith("codec_bridge: stored 0 utterances") and "12 done by earlier runs" in line
    )
    assert os.path.basename(str(store)) in line


def test_duplicate_ids_are_stored_once(tmp_path, corpora, weights_file):
    digits = sorted((corpora[1] / "recordings").glob("*_theo_*.wav"))[:2]
    (tmp_path / "list.jsonl").write_text(
        "".join(
            json.dumps({"id": "u1", "path": str(p), "text": "x"}) + "\n"
            for p in (digits[0], digits[0], digits[1])  # the same entry twice, then a clash
        )
    )
    out = tmp_path / "codes"
    kw = dict(format="manifest", weights=weights_file, **FAST)
    first = extract(tmp_path / "list.jsonl", out, **kw)
    assert (first.stored, first.skipped) == (1, 1)
    assert CodeStore.open(out).get("u1").path == str(digits[0])
    (skip,) = CodeStore.open(out).skipped()
    assert skip["path"] == str(digits[1]) and skip["reason"].startswith("duplicate id")
    again = extract(tmp_path / "list.jsonl", out, **kw)
    assert (again.stored, again.skipped, again.already) == (0, 0, 3)


def test_stores_do_not_depend_on_thread_count(tmp_path, corpora, weights_file):
    kw = dict(format="fsdd", weights=weights_file, limit=12, part_utterances=5, batch_seconds=1.5)
    parts = {}
    for threads in (1, 3):
        out = tmp_path / f"t{threads}"
        extract(corpora[1], out, threads=threads, **kw, **FAST)
        cs = CodeStore.open(out)
        parts[threads] = [[r["id"] for r in s.records()] for s in cs.shards], contents(out)
    (ids1, codes1), (ids3, codes3) = parts[1], parts[3]
    assert ids1 == ids3 and len(ids1) == 3
    assert all(np.array_equal(codes1[u], codes3[u]) for u in codes1)


def lock_holder(out: Path) -> str | None:
    return holder(out / ".writer-00000-of-00001.lock")


def test_a_second_writer_is_refused_and_a_killed_ones_lock_is_not(tmp_path, corpora, weights_file):
    out = tmp_path / "same"
    args = ["--format", "fsdd", "--input", str(corpora[1]), "--out", str(out), "--limit", "12"]
    args += ["--weights", str(weights_file), "--part-utterances", "3", "--threads", "1"]
    first = subprocess.Popen(cli(*args), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while f"pid {first.pid} " not in (lock_holder(out) or ""):
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # a live writer, paused mid-run
    try:
        for extra, needle in [
            ((), f"(shard 0 of 1) is in use by pid {first.pid} on host "),
            (("--num-shards", "2"), "is being filled with --num-shards 1 by pid"),
        ]:
            second = subprocess.run(cli(*args, *extra), capture_output=True, text=True)
            err = second.stderr.strip()
            assert second.returncode == 2 and len(err.splitlines()) == 1 and needle in err, err
    finally:
        first.kill()  # kill -9 leaves its lock file (and maybe a half-written part) behind
        first.wait()
    assert (out / ".writer-00000-of-00001.lock").exists() and lock_holder(out) is None
    assert subprocess.run(cli(*args)).returncode == 0
    assert len(contents(out)) == 12 and len(CodeStore.open(out).ids) == 12
    assert not list((out / "shards").glob(".tmp-*"))


def test_the_same_command_twice_at_once_stores_everything_once(tmp_path, corpora, weights_file):
    out = tmp_path / "twice"
    args = ["--format", "fsdd", "--input", str(corpora[1]), "--out", str(out), "--limit", "12"]
    args += ["--weights", str(weights_file), "--part-utterances", "3", "--threads", "1"]
    procs = [subprocess.Popen(cli(*args), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    done = sorted((p.wait(timeout=300), p.stderr.read().strip()) for p in procs)
    assert [rc for rc, _ in done] in ([0, 0], [0, 2]), done  # refused, or came after the first
    assert all(len(err.splitlines()) == 1 and "is in use by pid" in err for rc, err in done if rc)
    assert len(contents(out)) == 12 and len(CodeStore.open(out).ids) == 12


def test_full_disk_is_one_line_and_leaves_no_temporary_files(tmp_path, corpora, weights_file):
    disk = tmp_path / "disk"
    lj = ["--format", "ljspeech", "--input", str(corpora[0]), "--limit", "6"]
    lj += ["--part-utterances", "2", "--threads", "1"]
    untrained = cli(*lj, "--out", str(disk / "u"), "--weights", "untrained")
    from_file = cli(*lj, "--out", str(disk / "f"), "--weights", str(weights_file))
    out = sandbox.run(
        sandbox.tmpfs(disk, "2m")
        + sandbox.command(untrained)
        + "ls -A "
        + shlex.quote(str(disk / "u"))
        + "\n"
        + "mount -o remount,size=24k "
        + shlex.quote(str(disk))
        + "\n"
        + sandbox.command(from_file)
        + "find "
        + shlex.quote(str(disk / "f"))
        + " -name '.tmp-*'\n"
        + "mount -o remount,size=10m "
        + shlex.quote(str(disk))
        + "\n"
        + sandbox.command(from_file)
        + f"{sys.executable} -m codec_bridge verify {shlex.quote(str(disk / 'f'))}\n"
        + f"{sys.executable} -m codec_bridge info {shlex.quote(str(disk / 'f'))}\n"
    )
    lines = out.splitlines()
    assert lines[0] == "rc=2", out
    assert lines[1].startswith(f"codec_bridge extract: error: {disk / 'u' / 'codec_weights.pt'}: ")
    assert "no space left on device" in lines[1] and "needs 93.1 MB" in lines[1]
    assert lines[2] == ".writer-00000-of-00001.lock"  # the 93 MB temporary file is gone
    assert lines[3] == "rc=2", out
    assert "no space left on device" in lines[4] and "free some space and re-run" in lines[4]
    assert lines[5] == "rc=0" and lines[6] == "ok", out  # nothing half-written was left
    assert "utterances: 6" in out and "Traceback" not in out


def test_read_only_store_is_one_line(tmp_path, store, corpora, weights_file):
    copy = tmp_path / "ro"
    shutil.copytree(store, copy)
    argv = cli("--format", "fsdd", "--input", str(corpora[1]), "--out", str(copy))
    out = sandbox.run(
        sandbox.read_only(copy) + sandbox.command([*argv, "--weights", str(weights_file)])
    )
    assert out.splitlines() == [
        "rc=2",
        f"codec_bridge extract: error: {copy}: cannot write to the store (Read-only file system)",
    ]


def test_raising_max_seconds_retries_what_was_too_long(tmp_path, corpora, weights_file, capsys):
    digits = sorted((corpora[1] / "recordings").glob("*_theo_*.wav"))[:3]
    lines = [{"id": f"d{i}", "path": str(p), "text": "x"} for i, p in enumerate(digits)]
    (tmp_path / "list.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    args = ["extract", "--format", "manifest", "--input", str(tmp_path / "list.jsonl")]
    args += ["--out", str(tmp_path / "codes"), "--weights", str(weights_file), "--device", "cpu"]
    assert cli_main([*args, "--max-seconds", "0.01"]) == 0
    assert "stored 0 utterances" in capsys.readouterr().out
    skips = CodeStore.open(tmp_path / "codes").skipped()
    assert [s["reason"].startswith("too long") for s in skips] == [True] * 3
    assert cli_main([*args, "--max-seconds", "0.02"]) == 0  # known to be still too long
    assert "skipped 0 " in capsys.readouterr().out
    assert len(CodeStore.open(tmp_path / "codes").skipped()) == 3
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "stored 3 utterances" in out and "3 retried with the higher --max-seconds" in out
    store = CodeStore.open(tmp_path / "codes")
    assert sorted(store.ids) == ["d0", "d1", "d2"] and store.skipped() == []
    assert len((tmp_path / "codes" / "skipped.jsonl").read_text().splitlines()) == 3  # history


def test_a_duplicate_id_with_other_text_is_recorded(tmp_path, corpora, weights_file, capsys):
    wav = str(sorted((corpora[1] / "recordings").glob("*_theo_*.wav"))[0])
    rows = [("u1", "first text"), ("u1", "second text"), ("u2", "x")]
    (tmp_path / "list.jsonl").write_text(
        "".join(json.dumps({"id": i, "path": wav, "text": t}) + "\n" for i, t in rows)
    )
    args = ["extract", "--format", "manifest", "--input", str(tmp_path / "list.jsonl")]
    args += ["--out", str(tmp_path / "codes"), "--weights", str(weights_file), "--device", "cpu"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "stored 2 utterances" in out and ", skipped 1 " in out
    store = CodeStore.open(tmp_path / "codes")
    assert store.get("u1").text == "first text"
    (skip,) = store.skipped()
    assert (skip["id"], skip["path"], skip["text"]) == ("u1", wav, "second text")
    assert skip["reason"] == "duplicate id (same audio, other text)"
    assert cli_main(args) == 0 and "skipped 0" in capsys.readouterr().out
    assert len(CodeStore.open(tmp_path / "codes").skipped()) == 1


def test_other_batching_changes_at_most_rare_near_ties(tmp_path, store, corpora, lj_short):
    """The documented guarantee: --batch-seconds (or a resume, or another device) regroups
    utterances, which changes float rounding, which flips only codes whose two nearest codebook
    entries are nearly equidistant: same frame counts, at most 1 code in 1000 different."""
    out = tmp_path / "regrouped"
    weights = CodeStore.open(store).meta["weights"]["path"]
    kw = dict(weights=weights, batch_seconds=2.0, threads=1, **FAST)
    extract(lj_short, out, format="ljspeech", **kw)
    extract(corpora[1], out, format="fsdd", limit=12, **kw)
    got, want = contents(out), contents(store)
    assert got.keys() == want.keys()
    assert all(got[u].shape == want[u].shape for u in got)
    differing = sum(int((got[u] != want[u]).sum()) for u in got)
    assert differing <= sum(c.size for c in want.values()) / 1000
