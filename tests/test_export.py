"""`python -m jtts.export`: a run becomes a shipped model folder that `jtts.sample` speaks
with from anywhere, the same codes as the run (the tiny overfit run of test_sampler, with the
untrained EnCodec weights kept in its store as the codec)."""

import json
import shutil

import numpy as np
import soundfile as sf
from test_sampler import GREEDY, cli, codec_run, run  # noqa: F401 (fixtures)

from codec_bridge.format import file_sha256, load_codes
from jtts import export, shipped
from jtts.config import config_diff
from jtts.trained_run import load_run


def test_a_shipped_model_speaks_as_its_run_from_anywhere(codec_run, tmp_path, capsys):  # noqa: F811
    run_dir, utts = codec_run
    assert export.main(["--workdir", str(run_dir), "--out", str(tmp_path / "model")]) == 0
    line = capsys.readouterr().out
    assert "params.msgpack" in line and "codec.pt" in line and "sha256" in line
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(tmp_path / "model", moved)
    shutil.rmtree(tmp_path / "model")  # the folder alone speaks: no run, no store beside it
    for workdir, name in ((run_dir, "run"), (moved, "shipped")):
        out = tmp_path / f"{name}.wav"
        args = ["--workdir", workdir, "--text", utts[0].text, "--out", out]
        code, _, err = cli(capsys, *args, "--codes-out", tmp_path / f"{name}.npy", *GREEDY)
        assert code == 0, err
    codes, meta = load_codes(tmp_path / "shipped.npy")
    np.testing.assert_array_equal(codes, load_codes(tmp_path / "run.npy")[0])
    np.testing.assert_array_equal(codes, utts[0].codes)  # float16 weights, the same codes
    assert meta["weights"]["path"] == str(moved / shipped.CODEC)
    assert meta["weights"]["sha256"] == file_sha256(moved / shipped.CODEC)
    assert sf.info(str(tmp_path / "shipped.wav")).frames == codes.shape[1] * 320


def test_a_model_ships_the_sampling_defaults_it_is_given(codec_run, tmp_path, capsys):  # noqa: F811
    """`--set sample.KEY=V` changes the shipped config's sampling defaults and nothing else;
    other sections, unknown keys and bad values are refused in one line, nothing written."""
    run_dir, _ = codec_run
    out = tmp_path / "model"
    sets = ["--set", "sample.cfg_scale=2", "--set", "sample.temperature=0.7"]
    assert export.main(["--workdir", str(run_dir), "--out", str(out), *sets]) == 0
    capsys.readouterr()
    cfg, was = load_run(out).cfg, load_run(run_dir).cfg
    assert (cfg.sample.cfg_scale, cfg.sample.temperature) == (2.0, 0.7)
    assert sorted(config_diff(cfg, was)) == ["sample.cfg_scale", "sample.temperature"]
    for bad, says in (
        ("model.d_model=8", "changes only its sample.* settings"),
        ("sample.guidance=2", "unknown key 'sample.guidance'"),
        ("sample.cfg_null=speaker", "sample.cfg_null must be one of all, text"),
    ):
        args = ["--workdir", str(run_dir), "--out", str(tmp_path / "n"), "--set", bad]
        assert export.main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
        assert not (tmp_path / "n").exists()


def test_export_refusals_are_one_line(run, tmp_path, capsys):  # noqa: F811
    run_dir, _ = run
    assert export.main(["--workdir", str(tmp_path / "none"), "--out", str(tmp_path / "m")]) == 2
    assert "no such directory" in capsys.readouterr().err
    # The synthetic store records seeded untrained weights it never kept: nothing to ship.
    assert export.main(["--workdir", str(run_dir), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no codec weights file to ship" in err
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / shipped.MODEL_JSON).write_text("{}")
    assert export.main(["--workdir", str(tmp_path / "m"), "--out", str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "format None" in err


def test_a_shipped_model_takes_new_sampling_defaults_and_keeps_its_files(
    codec_run,  # noqa: F811
    tmp_path,
    capsys,
):
    run_dir, _ = codec_run
    first = tmp_path / "model"
    assert export.main(["--workdir", str(run_dir), "--out", str(first)]) == 0
    before = shipped.read_config(first)
    manifest = json.loads((first / shipped.MODEL_JSON).read_text())
    again = tmp_path / "again"
    sets = ["--set", "sample.follow=true", "--set", "sample.cfg_scale=2"]
    assert export.main(["--workdir", str(first), "--out", str(again), *sets]) == 0
    assert export.main(["--workdir", str(first), "--out", str(first), *sets]) == 0  # in place
    capsys.readouterr()
    for folder in (again, first):
        got = json.loads((folder / shipped.MODEL_JSON).read_text())
        assert {k: v for k, v in got.items() if k != "config"} == {
            k: v for k, v in manifest.items() if k != "config"
        }
        cfg = load_run(folder).cfg
        assert (cfg.sample.follow, cfg.sample.cfg_scale) == (True, 2.0)
        assert sorted(config_diff(cfg, before)) == ["sample.cfg_scale", "sample.follow"]
        for name, digest in got["files"].items():
            assert file_sha256(folder / name) == digest
    for args, says in (
        (["--step", "3"], "is a shipped model, of one step"),
        (["--set", "model.d_model=8"], "changes only its sample.* settings"),
        (["--set", "sample.speaker=bob"], "sample.speaker='bob': the model has no speaker table"),
    ):
        assert export.main(["--workdir", str(first), "--out", str(tmp_path / "n"), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
    (first / shipped.PARAMS).write_bytes(b"altered")
    assert export.main(["--workdir", str(first), "--out", str(tmp_path / "n"), *sets]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sha256 differs" in err
    assert not (tmp_path / "n").exists()
