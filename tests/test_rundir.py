"""The run directory's layout: every name against the documented contract (spelled out here,
independently of `RunDir`), the step folders, and the layout version: a run without run.json
is layout 1, a newer or unreadable one is a one-line error naming the file."""

import json

import pytest

from jtts.rundir import LAYOUT_VERSION, RunDir, RunDirError


def test_every_name_is_the_documented_one(tmp_path):
    run = RunDir(str(tmp_path))  # a str is accepted
    assert run.root == tmp_path
    assert run.layout_file == tmp_path / "run.json"
    assert run.config == tmp_path / "config.json"
    assert run.store == tmp_path / "store.json"
    assert run.checkpoints == tmp_path / "checkpoints"
    assert run.checkpoint(12) == tmp_path / "checkpoints" / "12"
    assert run.damaged_checkpoint(8, "20250101") == tmp_path / "checkpoints" / "8.damaged-20250101"
    assert run.metrics == tmp_path / "metrics.jsonl"
    assert run.tensorboard == tmp_path / "tb"
    assert run.loss_plot == tmp_path / "loss.png"
    assert run.attention(4) == tmp_path / "attention" / "step_4.npy"
    assert run.samples_dir == tmp_path / "samples"
    assert run.samples(4) == tmp_path / "samples" / "step_4"
    assert run.lock == tmp_path / ".lock"
    assert not tmp_path.joinpath("checkpoints").exists()  # naming creates nothing


def test_saved_steps_are_found_in_step_order(tmp_path):
    run = RunDir(tmp_path)
    assert run.attention_steps() == {} and run.sample_sidecars() == []
    assert not run.has_checkpoints()
    (tmp_path / "attention").mkdir()
    for name in ("step_10.npy", "step_9.npy", "step_x.npy", "notes.txt"):
        (tmp_path / "attention" / name).write_bytes(b"")
    assert list(run.attention_steps().items()) == [
        (9, tmp_path / "attention" / "step_9.npy"),
        (10, tmp_path / "attention" / "step_10.npy"),
    ]
    (tmp_path / "samples" / "step_4").mkdir(parents=True)
    for name in ("A.json", "A.npy"):
        (tmp_path / "samples" / "step_4" / name).write_bytes(b"")
    assert run.sample_sidecars() == [tmp_path / "samples" / "step_4" / "A.json"]
    (tmp_path / "checkpoints" / "4").mkdir(parents=True)
    assert run.has_checkpoints()
    for name in ("10", "4.damaged-20261205", "12.orbax-checkpoint-tmp-1"):
        (tmp_path / "checkpoints" / name).mkdir()
    assert run.saved_steps() == [4, 10]


def test_a_run_without_run_json_is_layout_1(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a run written before the layout was recorded
    assert RunDir(tmp_path).layout() == 1 and LAYOUT_VERSION == 1


def test_the_written_layout_reads_back(tmp_path):
    run = RunDir(tmp_path)
    run.write_layout()
    assert json.loads((tmp_path / "run.json").read_text()) == {"layout": LAYOUT_VERSION}
    assert run.layout() == LAYOUT_VERSION


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"layout": 2}', "run directory layout 2, this jtts reads layout 1 and older"),
        ("{garbage", 'not {"layout": N}'),
        ('{"version": 1}', 'not {"layout": N}'),
        ("[1]", 'not {"layout": N}'),
        ('{"layout": "1"}', "layout '1' is not a version number"),
        ('{"layout": 0}', "layout 0 is not a version number"),
    ],
)
def test_a_newer_or_unreadable_layout_is_one_line(tmp_path, text, message):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(RunDirError) as e:
        RunDir(tmp_path).layout()
    assert str(e.value).startswith(f"{tmp_path / 'run.json'}: ") and message in str(e.value)
    assert "\n" not in str(e.value)
