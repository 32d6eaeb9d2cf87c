"""Run every benchmark in bench/ in turn; each prints one JSON object.

accelerator.py is left to bench/accelerator.sh: it is sized for a GPU (its CPU form is the
tests' dry run). says_anything.py and learning_curve.py judge a run you name on a held-out
corpus you built (`--workdir RUN --heldout DIR`): they are run by hand. everyday.py judges the
shipped model."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
failed = []
for script in sorted(here.glob("*.py")):
    skip = (Path(__file__).name, "torch_reference.py", "codec_corpus.py", "accelerator.py")
    skip += ("says_anything.py", "learning_curve.py")
    if script.name in skip:
        continue
    print(f"== {script.name}", flush=True)
    if subprocess.run([sys.executable, str(script)]).returncode != 0:
        failed.append(script.name)
if failed:
    sys.exit(f"benchmarks failed: {', '.join(failed)}")
