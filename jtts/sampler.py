"""Text to codec codes to wav files for a trained run: the library behind `python -m jtts.sample`.

The options are checked, the run is loaded and each text encoded with its training front end
(`jtts.trained_run`), and each other attribute the run reads (`--NAME VALUE`, listed by
`--list-NAMEs`) is looked up in its table of names; the texts are decoded in length-sorted
batches by `jtts.decode.generate`, reverted to codes_KxT and written by `jtts.codec_io`, whose
`python -m codec_bridge decode` subprocess makes the waveforms; every phase is timed (`Timings`).

A voice prompt (`--prompt-wav`, 1 to 10 s) is encoded by `python -m codec_bridge encode` with
the run's codec at its bandwidth; every text then continues it (VALL-E style: its transcript,
`--prompt-text`, leads each text the model reads, see `jtts.decode`), and the output holds only
the continuation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codec_bridge.textfile import EncodingError, read_text
from jtts import conditioning, decode
from jtts.codec_io import CodecError, codec_decoder, encode_prompt, write_codes
from jtts.sampling import CONFIG_KNOBS, Sampling
from jtts.text import cache_dir
from jtts.trained_run import Run, UsageError, choose_categories, encode, list_names, load_run


class MaxLengthWarning(UserWarning):
    """Some texts reached the length cap without EOS; their audio is cut there."""


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
    # waiting for `codec_bridge decode` once the codes are written (its start-up overlaps
    # load and decode), 0 without wavs
    codec_s: float
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


def _listing(o: Mapping[str, Any]) -> str | None:
    """The attribute whose names `--list-NAMEs` asks for, if any."""
    return next((n for n in conditioning.ATTRIBUTES if o.get(f"list_{n}s")), None)


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
    """The CLI's work: prints the summary line (and writes `--timings-json`). The codec's
    decoder starts first, so that its imports overlap loading and decoding."""
    t_start = time.perf_counter()
    if name := _listing(o):
        print("\n".join(list_names(o["workdir"], name)))
        return
    _check_options(o)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jtts-codes-")))
        if o["text"] is not None:
            codes_at = Path(o["codes_out"] or tmp / "codes.npy")
            codec_args = [str(codes_at), "--out", o["out"]]
        else:
            codes_at = Path(o["codes_out"] or tmp)
            codec_args = ["--in-dir", str(codes_at), "--out-dir", str(o["out_dir"])]
        go = None
        if o["out"] or o["out_dir"]:
            go = stack.enter_context(codec_decoder(codec_args, o["codes_out"]))
        timings = _speak(o, codes_at, go, t_start)
    print(timings.line())
    if o["timings_json"]:
        Path(o["timings_json"]).write_text(json.dumps(dataclasses.asdict(timings)) + "\n")


def _speak(
    o: dict[str, Any], codes_at: Path, go: Callable[[], None] | None, t_start: float
) -> Timings:
    """Text to codes files at `codes_at` (a file for `--text`, a folder for `--text-file`),
    then `go` (the waiting decoder) turns them into wavs."""
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
    if o["text"] is not None:
        write_codes(run, codes_at, syn.codes[0], raw[0], said[0], eos=syn.eos[0], **provenance)
    else:
        for stem, text, spoken, codes, eos in zip(
            stems, raw, said, syn.codes, syn.eos, strict=True
        ):
            write_codes(run, codes_at / f"{stem}.npy", codes, text, spoken, eos=eos, **provenance)
    t_codec = time.perf_counter()
    if go is not None:
        go()
    t_end = time.perf_counter()
    return Timings(
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
