"""The codec training run directory's layout: every name against the documented contract
(spelled out here, independently of `CodecRunDir`, so runs written before it still resume),
and the snapshots listed in training-minute order, other names ignored."""

from codec_bridge.training.rundir import CodecRunDir


def test_every_name_is_the_documented_one(tmp_path):
    run = CodecRunDir(str(tmp_path))  # a str is accepted
    assert run.root == tmp_path
    assert run.config == tmp_path / "config.json"
    assert run.checkpoint == tmp_path / "checkpoint.pt"
    assert run.weights == tmp_path / "codec.pt"
    assert run.snapshots_dir == tmp_path / "snapshots"
    assert run.snapshot(7) == tmp_path / "snapshots" / "codec_0007min.pt"
    assert run.snapshot(12345) == tmp_path / "snapshots" / "codec_12345min.pt"
    assert run.metrics == tmp_path / "metrics.jsonl"
    assert run.tensorboard == tmp_path / "tb"
    assert run.samples(40) == tmp_path / "samples" / "step_40"
    assert run.sample(40, "LJ001-0001") == tmp_path / "samples" / "step_40" / "LJ001-0001.wav"
    assert run.sample(40, "spk/utt").parent == tmp_path / "samples" / "step_40"  # stays inside
    assert run.spectrogram(40) == tmp_path / "samples" / "step_40" / "spectrogram.png"
    assert list(tmp_path.iterdir()) == []  # naming creates nothing


def test_snapshots_in_minute_order_other_names_ignored(tmp_path):
    run = CodecRunDir(tmp_path)
    assert run.snapshots() == []  # no snapshots/ folder yet
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    names = ["codec_0020min.pt", "codec_0005min.pt", "codec_10000min.pt", "codec_9999min.pt"]
    names += ["codec_xmin.pt", "codec_0030min.pt.tmp", ".codec_0040min.pt.tmp", "notes.txt"]
    for name in names:
        (snaps / name).write_bytes(b"")
    assert run.snapshots() == [
        (5, snaps / "codec_0005min.pt"),
        (20, snaps / "codec_0020min.pt"),
        (9999, snaps / "codec_9999min.pt"),
        (10000, snaps / "codec_10000min.pt"),  # by minutes, not by name
    ]
    assert run.snapshots()[1][1] == run.snapshot(20)  # what the trainer writes is listed
