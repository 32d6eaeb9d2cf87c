"""A trained run as the sampler reads it (the tiny run of test_sampler); its text front end and
attribute tables are exercised end to end by test_sampler and test_conditioning."""

import json

from test_sampler import run  # noqa: F401 (fixture)

from jtts.rundir import RunDir
from jtts.trained_run import load_run


def test_store_meta_from_training_samples(run, tmp_path):  # noqa: F811
    """Runs without store.json: the codec meta comes from the trainer's sample sidecars."""
    run_dir, _ = run
    other, trained = RunDir(tmp_path / "run"), RunDir(run_dir)
    other.samples(4).mkdir(parents=True)
    other.checkpoints.symlink_to(trained.checkpoints)
    sidecar = json.loads(trained.store.read_text())
    sidecar.update(id="LJ001-0001", text="x", step=4)
    (other.samples(4) / "LJ001-0001.json").write_text(json.dumps(sidecar))
    meta = load_run(other.root).store_meta
    assert meta["store_dir"] == sidecar["store_dir"] and "text" not in meta
