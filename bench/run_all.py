"""Run every benchmark in bench/ in turn; each prints one JSON object.

accelerator.py and accelerator_train.py are left to bench/accelerator.sh: they are sized for
a GPU (their CPU forms are the tests' dry runs). says_anything.py, learning_curve.py,
voices.py and prompts.py judge a run you name on held-out sentences you built (`--workdir RUN
--heldout ...`), and fit_gap.py a run beside its code store: they are run by hand.
everyday.py judges the shipped model."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
failed = []
for script in sorted(here.glob("*.py")):
    skip = (Path(__file__).name, "torch_reference.py", "codec_corpus.py")
    skip += ("accelerator.py", "accelerator_train.py")
    skip += ("says_anything.py", "learning_curve.py", "voices.py", "prompts.py", "fit_gap.py")
    if script.name in skip:
        continue
    print(f"== {script.name}", flush=True)
    if subprocess.run([sys.executable, str(script)]).returncode != 0:
        failed.append(script.name)
if failed:
    sys.exit(f"benchmarks failed: {', '.join(failed)}")
