"""Speech corpora built offline: ordinary English sentences spoken by a chosen synthetic voice.

One package that jtts's demo, the codec benches and codec training share, so there is one eSpeak
driver, one sentence split and one on-disk layout (LJ Speech: ``metadata.csv`` + ``wavs/``). It
imports neither torch nor jax. Modules: `voices` (engines behind ``speak(text) -> (wav, rate)``),
`espeak` (eSpeak NG through ctypes), `sources` (offline text), `sentences` (cleaning and the
train / held-out split), `builder` (resumable LJ Speech writer), `grammar` (the demo's template
grammar and its corpus), ``python -m speechcorpus`` (CLI).
"""
