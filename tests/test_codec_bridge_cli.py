"""The command line: thin over the API, one-line errors, meaningful exit codes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from codec_bridge.cli import main
from codec_bridge.codec import MODELS
from codec_bridge.format import CodeStore, save_codes


@pytest.fixture(scope="module")
def store(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("store") / "codes"
    assert main(extract_args(shared_data, out)) == 0
    return out


def extract_args(shared_data, out) -> list[str]:
    fsdd = str(shared_data / "fsdd_test")
    args = ["extract", "--format", "fsdd", "--input", fsdd, "--out", str(out), "--device", "cpu"]
    return args + ["--weights", "untrained", "--limit", "2", "--bandwidth", "3"]


def one_line_error(capsys, rc: int, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err


def test_extract_prints_a_summary(store, shared_data, capsys):
    rc = main(extract_args(shared_data, store))
    out = capsys.readouterr().out
    assert rc == 0 and "stored 0 utterances" in out and "2 done by earlier runs" in out


def test_wrong_input_path(tmp_path, capsys):
    nope, o = str(tmp_path / "nope"), str(tmp_path / "o")
    rc = main(["extract", "--format", "ljspeech", "--input", nope, "--out", o])
    one_line_error(capsys, rc, "nope: --input path does not exist")


def test_unknown_format(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(
            ["extract", "--format", "timit", "--input", str(tmp_path), "--out", str(tmp_path / "o")]
        )
    one_line_error(capsys, e.value.code, "invalid choice: 'timit'")


def test_pretrained_unavailable(tmp_path, shared_data, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    args = extract_args(shared_data, tmp_path / "o")
    rc = main(args[: args.index("--weights")])  # pretrained, the default
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith(
        "codec_bridge extract: error: pretrained EnCodec 24khz weights unavailable"
    )
    assert MODELS["24khz"].checkpoint in err[-1] and "--weights FILE" in err[-1]
    assert not any(line.startswith("Traceback") for line in err)


def test_info_text_and_json(store, capsys):
    assert main(["info", str(store)]) == 0
    assert "utterances: 2" in capsys.readouterr().out
    assert main(["info", str(store), "--json", "--val-fraction", "0.5"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["utterances"] == 2 and d["n_codebooks"] == 4 and d["val_fraction"] == 0.5


def test_verify_exit_codes(store, tmp_path, capsys):
    assert main(["verify", str(store)]) == 0 and capsys.readouterr().out.strip() == "ok"
    assert main(["verify", str(tmp_path)]) == 1
    assert "meta.json: file is missing" in capsys.readouterr().out


def test_decode_forms(store, tmp_path, capsys):
    cs = CodeStore.open(store)
    uid = cs.ids[0]
    assert (
        main(["decode", "--store", str(store), "--id", uid, "--out", str(tmp_path / "a.wav")]) == 0
    )
    assert sf.info(tmp_path / "a.wav").frames == cs.get(uid).n_frames * 320
    (tmp_path / "in").mkdir()
    save_codes(tmp_path / "in" / "x.npy", cs.get(uid).codes, {**cs.meta, "store_dir": str(store)})
    assert main(["decode", str(tmp_path / "in" / "x.npy"), "--out", str(tmp_path / "b.wav")]) == 0
    assert (
        main(["decode", "--in-dir", str(tmp_path / "in"), "--out-dir", str(tmp_path / "out")]) == 0
    )
    assert (tmp_path / "out" / "x.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert "UNTRAINED" in capsys.readouterr().err


def test_decode_waits_for_go(store, tmp_path, capsys, monkeypatch):
    """`--wait` (jtts starts the decoder before its codes exist): it decodes only after a line
    'go' on stdin; stdin closed first is a one-line refusal that writes nothing."""
    uid = CodeStore.open(store).ids[0]
    args = ["decode", "--store", str(store), "--id", uid, "--wait"]
    monkeypatch.setattr("sys.stdin", io.StringIO("go\n"))
    assert main([*args, "--out", str(tmp_path / "a.wav")]) == 0
    assert sf.info(tmp_path / "a.wav").frames == CodeStore.open(store).get(uid).n_frames * 320
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    one_line_error(capsys, main([*args, "--out", str(tmp_path / "b.wav")]), "closed before 'go'")
    assert not (tmp_path / "b.wav").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--out", "x.wav"], "exactly one of"),
        (["--id", "u", "--out", "x.wav"], "--id needs --store"),
        (["--in-dir", "."], "--in-dir needs --out-dir"),
        (["c.npy"], "decode needs --out"),
    ],
)
def test_decode_argument_errors(args, needle, capsys):
    one_line_error(capsys, main(["decode", *args]), needle)


def test_bad_codes_file(store, tmp_path, capsys):
    save_codes(tmp_path / "bad.npy", np.full((4, 3), 5000, np.uint16), CodeStore.open(store).meta)
    bad, wav = str(tmp_path / "bad.npy"), str(tmp_path / "o.wav")
    rc = main(["decode", bad, "--store", str(store), "--out", wav])
    one_line_error(capsys, rc, "bad.npy: codes out of range")


def test_unreadable_input_is_one_line(tmp_path, capsys):
    (tmp_path / "lj" / "metadata.csv").mkdir(parents=True)  # not a file
    rc = main(
        ["extract", "--format", "ljspeech", "--input", str(tmp_path / "lj")]
        + ["--out", str(tmp_path / "o")]
    )
    one_line_error(capsys, rc, f"{tmp_path / 'lj' / 'metadata.csv'}: Is a directory")
