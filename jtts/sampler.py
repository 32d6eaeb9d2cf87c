"""Text to codec codes to wav files for a trained run: the library behind `python -m jtts.sample`.

Texts are encoded with the training front end (`jtts.data.encode_text` and the run's
normalizer), each other attribute the run reads (`--NAME VALUE`, listed by `--list-NAMEs`) is
looked up in the run's table of names, the texts are decoded in length-sorted batches by `jtts.decode.generate`, reverted to
codes_KxT and written with `codec_bridge.format.save_codes`; waveforms come from
`python -m codec_bridge decode` in a subprocess, so this package never imports torch.

A voice prompt (`--prompt-wav`, 1 to 10 s) is encoded by `python -m codec_bridge encode` with
the run's codec at its bandwidth; every text then continues it (VALL-E style: its transcript,
`--prompt-text`, leads each text the model reads, see `jtts.decode`), and the output holds only
the continuation.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from codec_bridge.format import load_codes, save_codes
from codec_bridge.textfile import EncodingError, read_text
from jtts import conditioning, decode
from jtts.checkpoint import CheckpointError, load_model
from jtts.config import Config, ConfigError, load_config
from jtts.data import encode_text
from jtts.rundir import RunDir, RunDirError
from jtts.sampling import CONFIG_KNOBS, Sampling
from jtts.text import cache_dir, normalize
from jtts.verbalize import split_sentences


class UsageError(Exception):
    """Bad arguments or input; the CLI prints the one-line message and exits 2."""


class CodecError(Exception):
    """The codec subprocess failed; the CLI prints its one-line error and exits 1."""


PROMPT_SECONDS = (1.0, 10.0)  # a voice prompt's shortest and longest clip


class MaxLengthWarning(UserWarning):
    """Some texts reached the length cap without EOS; their audio is cut there."""


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained model ready to sample, with the code store it was trained on."""

    run_dir: Path
    cfg: Config
    model: nnx.Module
    step: int
    store_meta: dict[str, Any]  # codec meta of the training store, with store_dir

    @property
    def frame_rate(self) -> float:
        return float(self.store_meta["frame_rate"])


def _store_meta(run: RunDir) -> dict[str, Any]:
    """The training store's meta: the run's store reference, else a training sample's sidecar."""
    path = run.store
    if not path.exists():
        samples = sorted(run.sample_sidecars(), key=lambda p: p.stat().st_mtime)
        if not samples:
            raise UsageError(
                f"{run.root} does not say which code store it was trained on (no {path.name} "
                f"and no {run.samples_dir.name}/); write the store's meta.json plus "
                f'"store_dir" to {path}'
            )
        path = samples[-1]
    meta = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in meta.items() if k not in ("id", "text", "step", "shards")}


def load_run(run_dir: str | Path, step: int | None = None) -> Run:
    """Restores the best (or latest, or `step`) checkpoint's parameters and saved config."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"--workdir {run_dir}: no such directory (pass a training run dir)")
    paths = RunDir(run_dir)
    try:
        paths.layout()
    except RunDirError as e:
        raise UsageError(str(e)) from None
    if not paths.has_checkpoints():
        raise UsageError(
            f"{run_dir} has no checkpoints; train first (python -m jtts.train ... "
            f"--workdir {run_dir}) or pass another --workdir"
        )
    store_meta = _store_meta(paths)
    try:
        cfg, model, step = load_model(run_dir, step)
    except CheckpointError as e:
        raise UsageError(f"{e}; pass --step with one of the saved steps") from None
    return Run(run_dir, cfg, model, step, store_meta)


def encode(
    run: Run, text: str, where: str, *, split: bool = False, lead: str = ""
) -> tuple[list[np.ndarray], str]:
    """Token ids of `text` as training encoded it (one array, or one per sentence), and the
    normalized text they encode: what the model reads, e.g. the spoken form of numbers.
    `lead` (a voice prompt's transcript) is read before each piece."""
    normalizer, m = run.cfg.data.text_normalizer, run.cfg.model
    chunks, said = [], []
    for piece in split_sentences(text) if split else [text]:
        spoken = normalize(piece, normalizer)
        ids = encode_text(f"{lead} {piece}" if lead else piece, normalizer, m.text_units)
        if len(ids) > m.max_text_len:
            fix = "split that sentence" if split else "shorten it or pass --split-sentences"
            what = " with the --prompt-text before it" if lead else ""
            raise UsageError(
                f"{where}: {len(ids)} text {m.text_units} after normalization{what}, the model "
                f"reads at most {m.max_text_len}; {fix}"
            )
        # Only letters or digits are said: a lone "." or the joiner of an emoji would be babble.
        if any(c.isalnum() for c in spoken):
            chunks.append(ids)
            said.append(spoken)
    if not chunks:
        raise UsageError(
            f"{where}: the text is empty after normalization ({normalizer}): no letters or "
            "digits to say"
        )
    return chunks, " ".join(said)


@dataclasses.dataclass(frozen=True)
class Synthesis:
    """Codes of each text, whether each ended by EOS, and the compile and decode seconds."""

    codes: list[np.ndarray]  # codes_KxT per text
    eos: list[bool]  # every chunk of the text ended by EOS, none cut at max_frames
    compile_s: float
    decode_s: float


def synthesize(
    run: Run,
    texts: Sequence[list[np.ndarray]],
    sampling: Sampling,
    max_frames: int,
    batch_size: int,
    names: Sequence[str],
    categories: Mapping[str, int] | None = None,
    prompt: np.ndarray | None = None,
) -> Synthesis:
    """Codes for each text (its chunks decoded separately, then concatenated in time), every
    one with the same `categories` (see `choose_categories`) and continuing the same `prompt`
    codes, if any (see `encode_prompt`).

    Chunks are sorted by length so a batch wastes little padding; batch i uses seed + i.
    Warns (MaxLengthWarning) naming the texts whose chunks hit `max_frames` without EOS.
    """
    chunks = [(i, j, ids) for i, text in enumerate(texts) for j, ids in enumerate(text)]
    chunks.sort(key=lambda c: len(c[2]))
    out: dict[tuple[int, int], np.ndarray] = {}
    cut: set[int] = set()  # texts with a chunk cut at max_frames
    compile_s = decode_s = 0.0
    for b, start in enumerate(range(0, len(chunks), batch_size)):
        batch = chunks[start : start + batch_size]
        g = decode.generate(
            run.model,
            [ids for _, _, ids in batch],
            dataclasses.replace(sampling, seed=sampling.seed + b),
            max_frames,
            {name: [i] * len(batch) for name, i in (categories or {}).items()},
            prompt=prompt,
        )
        compile_s, decode_s = compile_s + g.compile_s, decode_s + g.decode_s
        for (i, j, _), codes, finished in zip(batch, g.codes, g.finished, strict=True):
            out[i, j] = codes
            if not finished:
                cut.add(i)
    if cut:
        which = ", ".join(names[i] for i in sorted(cut))
        warnings.warn(
            f"{which}: no EOS within {max_frames / run.frame_rate:.1f} s, "
            "audio cut there (raise --max-seconds, or the checkpoint is undertrained)",
            MaxLengthWarning,
            stacklevel=2,
        )
    codes = [
        np.concatenate([out[i, j] for j in range(len(text))], axis=1)
        for i, text in enumerate(texts)
    ]
    return Synthesis(codes, [i not in cut for i in range(len(texts))], compile_s, decode_s)


@dataclasses.dataclass(frozen=True)
class Timings:
    """Seconds of each phase of one `jtts.sample` call, in the order they run (they add up to
    `wall_s`), and the seconds of audio made: the summary line, and `--timings-json`."""

    texts: int
    step: int
    audio_s: float
    load_s: float  # checkpoint, text front end, a prompt's encoding
    compile_s: float
    decode_s: float
    host_s: float  # batching and reverting codes around the compiled programs
    write_s: float  # the codes files
    codec_s: float  # `python -m codec_bridge decode`, 0 without wavs
    wall_s: float

    def line(self) -> str:
        synth_s = self.wall_s - self.load_s
        return (
            f"jtts.sample: {self.texts} text(s), checkpoint step {self.step}: "
            f"audio {self.audio_s:.2f} s | wall {synth_s:.2f} s | "
            f"RTF {synth_s / self.audio_s:.3f} | compile {self.compile_s:.2f} s | "
            f"decode {self.decode_s:.2f} s (RTF {self.decode_s / self.audio_s:.3f}) | "
            f"codec {self.codec_s:.2f} s | load {self.load_s:.2f} s"
        )


def write_codes(
    run: Run, path: Path, codes_KxT: np.ndarray, text: str, normalized: str, **extra: Any
) -> None:
    """codes .npy + .json sidecar (store meta, store_dir, text, normalized, step, `extra`: the
    sampler adds `eos`, whether the text ended by EOS rather than at the length cap)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**run.store_meta, "text": text, "normalized": normalized, "step": run.step, **extra}
    save_codes(path, codes_KxT, meta)


def _codec_bridge(command: str, args: Sequence[Any]) -> tuple[int, str]:
    """`python -m codec_bridge COMMAND ARGS`: its exit code and its last line of output."""
    cmd = [sys.executable, "-m", "codec_bridge", command, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return proc.returncode, lines[-1] if lines else f"exit code {proc.returncode}"


def run_codec(args: list[str], codes: str | None) -> None:
    """`python -m codec_bridge decode ARGS`; a failure becomes a CodecError with its last line."""
    code, detail = _codec_bridge("decode", args)
    if code != 0:
        kept = f"the codes are in {codes}" if codes else "pass --codes-out to keep the codes"
        raise CodecError(f"codec decode failed: {detail} ({kept}; fix the codec and rerun)")


def encode_prompt(run: Run, wav: str) -> np.ndarray:
    """A voice prompt's codes_KxP, from `python -m codec_bridge encode` with the codec and
    bandwidth of the run's store. Audio it refuses (missing, unreadable, silent, shorter or
    longer than PROMPT_SECONDS) or a codec it cannot load (its exit 2) is a UsageError naming
    `--prompt-wav`; any other failure a CodecError."""
    lo, hi = PROMPT_SECONDS
    with tempfile.TemporaryDirectory(prefix="jtts-prompt-") as tmp:
        meta, out = Path(tmp) / "meta.json", Path(tmp) / "prompt.npy"
        meta.write_text(json.dumps(run.store_meta), encoding="utf-8")
        args = [wav, "--meta", meta, "--out", out, "--min-seconds", lo, "--max-seconds", hi]
        code, detail = _codec_bridge("encode", args)
        codes = load_codes(out)[0] if code == 0 else None
    if codes is None:
        detail = detail.removeprefix("codec_bridge encode: error: ").removeprefix(f"{wav}: ")
        if code == 2:
            raise UsageError(f"--prompt-wav {wav}: {detail}")
        raise CodecError(f"codec encode failed: --prompt-wav {wav}: {detail}")
    if codes.shape[0] != run.cfg.model.n_codebooks:
        raise UsageError(
            f"--prompt-wav {wav}: the codec gave {codes.shape[0]} codebooks, the model reads "
            f"{run.cfg.model.n_codebooks}; the run's store.json names the wrong codec"
        )
    return codes


def _sampling(run: Run, o: dict[str, Any]) -> Sampling:
    """The run's `sample` settings, overridden by the options that were given."""
    given = {name: o[name] for name in CONFIG_KNOBS if o[name] is not None}
    try:
        sampling = Sampling.of(run.cfg.sample, greedy=o["greedy"], seed=o["seed"], **given)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if sampling.length_scale != 1.0 and run.cfg.model.attention_prior is None:
        raise UsageError(
            f"--length-scale {sampling.length_scale:g}: {run.run_dir} has no attention prior "
            "(model.attention_prior), so nothing sets its length; leave it at 1"
        )
    return sampling


def choose_categories(cfg: Config, o: Mapping[str, Any], where: Path) -> dict[str, int]:
    """The id of each attribute the run reads besides the text, from its `--NAME` option; the
    only name of a table of one is the default. A name the run does not know, an option the run
    has no attribute for, or no choice among several names is a UsageError."""
    attrs = {a.name: c for a, c in conditioning.attributes(cfg.model)}
    for name in conditioning.ATTRIBUTES:
        if o.get(name) is not None and name not in attrs:
            raise UsageError(f"--{name}: {where} was not trained with a {name} (model.conditions)")
    chosen = {}
    for name, c in attrs.items():
        value = o.get(name)
        if value is None and len(c.values) > 1:
            raise UsageError(
                f"{where} speaks as {len(c.values)} {name}s; choose one with --{name} "
                f"({', '.join(c.values[:10])}{', ...' if len(c.values) > 10 else ''})"
            )
        try:
            chosen[name] = conditioning.lookup(
                cfg.model, name, c.values[0] if value is None else value
            )
        except ValueError as e:
            raise UsageError(f"--{name}: {e}") from None
    return chosen


def _listing(o: Mapping[str, Any]) -> str | None:
    """The attribute whose names `--list-NAMEs` asks for, if any."""
    return next((n for n in conditioning.ATTRIBUTES if o.get(f"list_{n}s")), None)


def list_names(workdir: str | Path, name: str) -> list[str]:
    """The names a run's attribute `name` knows (its saved config's table), for --list-NAMEs."""
    path = RunDir(workdir).config
    try:
        cfg = load_config(path)
    except ConfigError as e:
        raise UsageError(f"--workdir {workdir}: {e}") from None
    attrs = {a.name: c for a, c in conditioning.attributes(cfg.model)}
    if name not in attrs:
        raise UsageError(
            f"--list-{name}s: {workdir} was not trained with a {name} (model.conditions)"
        )
    return list(attrs[name].values)


def _read_lines(path: str) -> list[tuple[int, str]]:
    try:
        lines = read_text(path).splitlines()
    except OSError as e:
        raise UsageError(f"--text-file {path}: {e.strerror}") from None
    except EncodingError as e:
        raise UsageError(f"--text-file {e}") from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise UsageError(f"--text-file {path}: no text in the file")
    return numbered


def _check_options(o: dict[str, Any]) -> None:
    if o["text"] is None and o["text_file"] is None:
        raise UsageError("pass --text TEXT or --text-file FILE")
    if o["text"] is not None:
        if not o["text"].strip():
            raise UsageError("--text is empty; pass the sentence to speak")
        if o["out_dir"] or not (o["out"] or o["codes_out"]):
            raise UsageError("--text writes --out OUT.wav and/or --codes-out CODES.npy")
        if o["codes_out"] and not o["codes_out"].endswith(".npy"):
            raise UsageError(f"--codes-out {o['codes_out']}: with --text, name a .npy file")
    elif o["out"] or not (o["out_dir"] or o["codes_out"]):
        raise UsageError("--text-file writes --out-dir DIR (wavs) and/or --codes-out DIR (codes)")
    if o["batch_size"] < 1:
        raise UsageError(f"--batch-size must be >= 1, got {o['batch_size']}")
    if o["max_seconds"] is not None and o["max_seconds"] <= 0:
        raise UsageError(f"--max-seconds must be > 0, got {o['max_seconds']}")
    if o["prompt_text"] is not None:
        if o["prompt_wav"] is None:
            raise UsageError("--prompt-text is the transcript of --prompt-wav REF.wav; pass both")
        if not o["prompt_text"].strip():
            raise UsageError("--prompt-text is empty; pass what --prompt-wav says, or leave it out")


def _max_frames(run: Run, max_seconds: float | None, prompt: tuple[str, int] | None = None) -> int:
    """Frames per text: --max-seconds, else `sample.max_seconds` but never fewer than the
    longest utterance the run trained on (`data.max_frames`); at most `model.max_frames`, less
    the frames of a `prompt` (its --prompt-wav and frames), which must leave at least 1 s."""
    fps = run.frame_rate
    seconds = run.cfg.sample.max_seconds if max_seconds is None else max_seconds
    frames = round(seconds * fps)
    if max_seconds is None:
        frames = max(frames, run.cfg.data.max_frames)
    limit = run.cfg.model.max_frames
    if prompt is not None:
        wav, used = prompt
        if limit - used < fps:
            raise UsageError(
                f"--prompt-wav {wav}: its {used / fps:.1f} s leave {(limit - used) / fps:.1f} s "
                f"of the model's {limit / fps:.1f} s (model.max_frames) to speak in; use a "
                "shorter clip"
            )
        limit -= used
    if frames > limit:
        print(f"note: audio capped at the model's {limit / fps:.1f} s", file=sys.stderr)
    return max(1, min(frames, limit))


def _main(o: dict[str, Any]) -> None:
    """The CLI's work: prints the summary line (and writes `--timings-json`)."""
    t_start = time.perf_counter()
    if name := _listing(o):
        print("\n".join(list_names(o["workdir"], name)))
        return
    _check_options(o)
    decode.enable_compilation_cache(cache_dir() / "xla")
    run = load_run(o["workdir"], o["step"])
    categories = choose_categories(run.cfg, o, run.run_dir)
    sampling = _sampling(run, o)
    if o["text"] is not None:
        stems, raw, names = ["codes"], [o["text"]], ["--text"]
    else:
        lines = _read_lines(o["text_file"])
        width = max(4, len(str(lines[-1][0])))
        stems = [f"{n:0{width}d}" for n, _ in lines]
        raw = [text for _, text in lines]
        names = [f"line {n}" for n, _ in lines]
    lead = (o["prompt_text"] or "").strip()
    encoded = [
        encode(run, text, where, split=o["split_sentences"], lead=lead)
        for text, where in zip(raw, names, strict=True)
    ]
    texts, said = [ids for ids, _ in encoded], [spoken for _, spoken in encoded]
    if o["print_normalized"]:
        print("\n".join(said))
    prompt, provenance = None, {}
    if o["prompt_wav"] is not None:
        prompt = encode_prompt(run, o["prompt_wav"])
        provenance = {"prompt": {"wav": o["prompt_wav"], "text": lead, "frames": prompt.shape[1]}}
    max_frames = _max_frames(
        run, o["max_seconds"], None if prompt is None else (o["prompt_wav"], prompt.shape[1])
    )
    t_ready = time.perf_counter()
    syn = synthesize(run, texts, sampling, max_frames, o["batch_size"], names, categories, prompt)
    t_codes = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jtts-codes-") as tmp:
        if o["text"] is not None:
            path = Path(o["codes_out"] or Path(tmp) / "codes.npy")
            write_codes(run, path, syn.codes[0], raw[0], said[0], eos=syn.eos[0], **provenance)
            codec_args = [str(path), "--out", o["out"]]
        else:
            folder = Path(o["codes_out"] or tmp)
            for stem, text, spoken, codes, eos in zip(
                stems, raw, said, syn.codes, syn.eos, strict=True
            ):
                write_codes(run, folder / f"{stem}.npy", codes, text, spoken, eos=eos, **provenance)
            codec_args = ["--in-dir", str(folder), "--out-dir", str(o["out_dir"])]
        t_codec = time.perf_counter()
        if o["out"] or o["out_dir"]:
            run_codec(codec_args, o["codes_out"])
    t_end = time.perf_counter()
    timings = Timings(
        texts=len(texts),
        step=run.step,
        audio_s=sum(c.shape[1] for c in syn.codes) / run.frame_rate,
        load_s=t_ready - t_start,
        compile_s=syn.compile_s,
        decode_s=syn.decode_s,
        host_s=t_codes - t_ready - syn.compile_s - syn.decode_s,
        write_s=t_codec - t_codes,
        codec_s=t_end - t_codec,
        wall_s=t_end - t_start,
    )
    print(timings.line())
    if o["timings_json"]:
        Path(o["timings_json"]).write_text(json.dumps(dataclasses.asdict(timings)) + "\n")


def cli(**options: Any) -> int:
    """Runs `python -m jtts.sample` with its parsed options; returns the exit code."""

    def show(message, *_args, **_kwargs) -> None:
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        try:
            _main(options)
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except CodecError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except OSError as e:  # writing the codes: a full disk, a read-only or vanished folder
            print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr)
            return 2
    return 0
