#!/usr/bin/env bash
# One prepared accelerator call: set up, then measure extraction, training (MFU) and decoding
# on the GPU (bench/accelerator.py: accelerator.json, accelerator.log and two jax.profiler
# traces), or train a larger voices model (bench/accelerator_train.py), writing to OUT_DIR
# (default: $OUT where the device tool sets it, else bench/out).
#
#   bash bench/accelerator.sh [OUT_DIR]   a GPU machine: install what is missing, measure (< 8 min)
#   bash bench/accelerator.sh --train OUT_DIR SECONDS
#                                         a GPU machine: install, train for SECONDS what
#                                         `accelerator_train.py pack` put into .carry/, export
#   bash bench/accelerator.sh --wheels [train]
#                                         a machine with the package registries: put into .whl/
#                                         what a GPU machine without them lacks beside its own
#                                         jax, flax and torch (num2words, openai-whisper's
#                                         tokenizer files; unless `train`: encodec, soundfile),
#                                         to carry there
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --wheels ]; then
  rm -rf .whl && mkdir .whl
  # pure Python; whisper is only read from disk (its BPE file), never imported
  python3 -m pip wheel --quiet --no-deps -w .whl num2words==0.5.14 docopt==0.6.2 \
    openai-whisper==20250625
  if [ "${2:-}" != train ]; then  # the codec's side of the measurement
    python3 -m pip wheel --quiet --no-deps -w .whl encodec==0.1.1  # an sdist: pure Python
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
  fi
  ls .whl
  exit 0
fi
mode=measure
if [ "${1:-}" = --train ]; then
  mode=train
  shift
  case "${2:-}" in ''|*[!0-9]*|0) echo "error: --train OUT_DIR SECONDS: SECONDS must be a whole number > 0, got '${2:-}'" >&2; exit 2 ;; esac
fi
out=${1:-${OUT:-bench/out}}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
if [ -d .whl ]; then  # no registries: the machine's own jax and torch, plus the carried wheels
  python3 -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/jtts-site .whl/*.whl
  export PYTHONPATH=/tmp/jtts-site${PYTHONPATH:+:$PYTHONPATH}
  py=python3
else  # a fresh GPU machine that reaches the registries
  python3 -m venv .venv-gpu
  .venv-gpu/bin/python -m pip install --quiet -c requirements/cpu-constraints.txt -e '.[cuda]'
  py=.venv-gpu/bin/python
fi
"$py" -c 'import jax, torch; print("jax", jax.__version__, jax.devices(), "torch", torch.__version__, torch.cuda.is_available())'
set -o pipefail
if [ $mode = train ]; then
  "$py" bench/accelerator_train.py train --out "$out" --seconds "$2" 2>&1 | tee "$out/train.log"
  exit
fi
"$py" bench/accelerator.py --out "$out/accelerator.json" --profile "$out" 2>&1 | tee "$out/accelerator.log"
