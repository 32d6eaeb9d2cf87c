"""Adversarial sweep: the real CLIs against bad input and interference (issue 11).

Each case runs `python -m codec_bridge ...`, `python -m jtts.train` or `python -m jtts.sample`
as a user would, on inputs it makes in a work directory (a 10-utterance corpus of eSpeak NG
speech and copied LJ Speech clips, untrained codec, `configs/tiny.yaml`), and checks what the
user would see: the exit code (0 for input that is tolerated or skipped with its reason, 2 for
a user error), no traceback, every error one line naming the file or value, and afterwards
that nothing committed was lost or duplicated (`codec_bridge verify` clean, codes equal to a
clean extraction, a resumed run's losses and parameters equal to an uninterrupted run's).
Full and read-only disks use a private mount namespace (`unshare -rm`); those cases fail
where user namespaces are disabled.

    python bench/adversarial.py [--work DIR] [--out report.json] [--only NAME ...] [--list]

Prints a table (case, command, expected, exit, message, verdict) and JSON; exits 1 if any case
failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec_bridge.format import (  # noqa: E402
    CodeStore,
    load_codes,
    read_skipped,
    save_codes,
    split_of,
)
from jtts.metrics import read_jsonl  # noqa: E402
from jtts.rundir import RunDir  # noqa: E402
from speechcorpus.grammar import build_corpus  # noqa: E402

PY = sys.executable
TINY = ROOT / "configs" / "tiny.yaml"
LJ = ROOT.parent / "shared" / "data" / "ljspeech_lj001"
LJ_IDS = ("LJ001-0008", "LJ001-0002")  # two short clips, copied into the work directory
SPECIAL = "<|endoftext|><|startoftranscript|><|en|><|transcribe|><|notimestamps|>"
# Extraction: one utterance per batch, so a resumed or concurrent run batches as a clean one
# and its codes must be bit-identical.
EXTRACT = ("--device", "cpu", "--threads", "1", "--workers", "1", "--batch-seconds", "1")
TRAIN = (
    "train.steps=12",
    "checkpoint.every=4",
    "log.every=1",
    "data.val_fraction=0",
    "data.bucket_sizes=[96]",
    "data.batch_frames=384",
)
TIMEOUT = 3600  # seconds per command: generous, for a machine busy with other work
# Ids that are paths, climb out of a folder, hold spaces or unicode, or equal what another
# flattens to; with data.val_fraction=0.5 four of them (both kinds) are validation samples.
ODD_IDS = (
    "spk/sub/utt1",
    "../../escape",
    "with space",
    "../../escape1",
    "ünï 日本語",
    "spk_sub_utt1",
)


class SetupError(Exception):
    """A shared input of several cases could not be made; those cases fail with this."""


@dataclasses.dataclass
class Proc:
    argv: list[str]
    rc: int | None
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def last_line(self) -> str:
        """The last line of stderr (of stdout when stderr is empty): what the user reads."""
        lines = [ln.strip() for ln in re.split(r"[\r\n]", self.err or self.out) if ln.strip()]
        return lines[-1] if lines else ""

    def errors(self) -> list[str]:
        """Lines of stderr that report an error (not warnings, banners or progress)."""
        return [ln for ln in self.err.splitlines() if re.search(r"(^|: )error: ", ln)]


@dataclasses.dataclass
class Case:
    name: str
    area: str
    expected: str
    run: Callable[[Sweep], Proc]
    quick: bool  # needs none of the shared inputs: run first


CASES: list[Case] = []


def case(area: str, expected: str, quick: bool = False):
    def register(fn: Callable[[Sweep], Proc]) -> Callable[[Sweep], Proc]:
        name = fn.__name__.removeprefix("case_").replace("_", "-")
        CASES.append(Case(name, area, expected, fn, quick))
        return fn

    return register


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    return env


class Sweep:
    """The work directory, the inputs cases share (made once, on first use), and the checks."""

    def __init__(self, work: Path):
        self.work = work
        self.procs: list[Proc] = []
        self.problems: list[str] = []

    # --- running commands -------------------------------------------------------------------

    def run(self, *argv: str, timeout: float = TIMEOUT) -> Proc:
        p = subprocess.run(
            list(argv), cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout
        )
        return self._record(Proc(list(argv), p.returncode, p.stdout, p.stderr))

    def start(self, *argv: str) -> subprocess.Popen:
        return subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, popen: subprocess.Popen, timeout: float = TIMEOUT) -> Proc:
        out, err = popen.communicate(timeout=timeout)
        return self._record(Proc(list(popen.args), popen.returncode, out, err))

    def _record(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def in_namespace(self, name: str, commands: list[tuple[str, list[str]]], setup: str) -> dict:
        """Runs `setup` (mount lines) then each (label, argv) in a private mount namespace;
        returns {label: Proc}. Output goes to files outside the namespace's mounts."""
        logs = self.work / "ns" / name
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
        lines = ["set -e", setup]
        for label, argv in commands:
            if argv[0] == "sh":
                lines.append(argv[1])
                continue
            f = shlex.quote(str(logs / label))
            lines.append(f"rc=0; {shlex.join(argv)} >{f}.out 2>{f}.err || rc=$?; echo $rc >{f}.rc")
        p = subprocess.run(
            ["unshare", "-rm", "sh", "-c", "\n".join(lines)],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=4 * TIMEOUT,
        )
        if p.returncode != 0:
            raise SetupError(f"unshare -rm failed ({p.stderr.strip()[-200:]})")
        procs = {}
        for label, argv in commands:
            if argv[0] != "sh":
                rc = int((logs / f"{label}.rc").read_text())
                out = (logs / f"{label}.out").read_text()
                procs[label] = self._record(
                    Proc(argv, rc, out, (logs / f"{label}.err").read_text())
                )
        return procs

    # --- checks -----------------------------------------------------------------------------

    def expect(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok

    def exit_code(self, proc: Proc, *codes: int) -> None:
        self.expect(proc.rc in codes, f"exit {proc.rc}, expected {'/'.join(map(str, codes))}")

    def one_line_error(self, proc: Proc, *needles: str) -> None:
        """Exactly one error line, the last line of stderr, naming every needle."""
        errors = proc.errors()
        if not self.expect(len(errors) == 1, f"{len(errors)} error lines"):
            return
        self.expect(errors[0].strip() == proc.last_line, "the error is not the last line")
        for needle in needles:
            self.expect(needle in errors[0], f"the error does not name {needle!r}")

    def user_error(self, proc: Proc, *needles: str) -> Proc:
        self.exit_code(proc, 2)
        self.one_line_error(proc, *needles)
        return proc

    def verify_clean(self, store: Path) -> None:
        p = self.run(*bridge("verify", str(store)))
        self.expect(p.rc == 0 and p.out.strip() == "ok", f"verify {store.name}: {p.text.strip()}")

    def same_codes(self, store: Path, reference: Path | None = None) -> None:
        """`store` holds each of `reference`'s utterances once, with bit-identical codes."""
        got, want = codes_by_id(store), codes_by_id(reference or self.store)
        self.expect(
            sorted(got) == sorted(want), f"ids {sorted(set(got) ^ set(want))} differ from clean"
        )
        changed = [u for u in want if u in got and not np.array_equal(got[u], want[u])]
        self.expect(not changed, f"codes differ from a clean extraction for {changed}")

    def same_run(self, run_dir: Path) -> None:
        """Losses of every step and final parameters equal the uninterrupted reference run's."""
        got, want = losses(run_dir), losses(self.trained)
        self.expect(
            got == want,
            f"losses differ from the uninterrupted run at steps "
            f"{sorted(s for s in set(got) | set(want) if got.get(s) != want.get(s))}",
        )
        self.expect(params_equal(run_dir, self.trained), "final parameters differ")

    # --- shared inputs ----------------------------------------------------------------------

    @functools.cached_property
    def corpus(self) -> Path:
        """LJ Speech layout: 6 eSpeak sentences, 2 LJ clips and a 20,000-character transcript
        (training must drop it and go on)."""
        espeak = build_corpus(self.work / "espeak", n=6)
        root = self.work / "corpus"
        (root / "wavs").mkdir(parents=True, exist_ok=True)
        lines = espeak.joinpath("metadata.csv").read_text(encoding="utf-8").splitlines()
        for p in (espeak / "wavs").glob("*.wav"):
            shutil.copy(p, root / "wavs" / p.name)
        if LJ.is_dir():
            rows = (LJ / "metadata.csv").read_text(encoding="utf-8").splitlines()
            lines += [r for r in rows if r.split("|")[0] in LJ_IDS]
            for uid in LJ_IDS:
                shutil.copy(LJ / "wavs" / f"{uid}.wav", root / "wavs" / f"{uid}.wav")
        shutil.copy(espeak / "wavs" / "DEMO-0001.wav", root / "wavs" / "HUGE.wav")
        huge = " ".join(["the quick brown fox jumps over the lazy dog"] * 450)
        lines.append(f"HUGE|{huge}|{huge}")
        (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return root

    @functools.cached_property
    def store(self) -> Path:
        """The clean store (`--weights untrained`, which saves the codec in the store)."""
        out = self.work / "stores" / "clean"
        p = self.clean_extraction = self.run(*extract(self.corpus, out, "--weights", "untrained"))
        if p.rc != 0:
            raise SetupError(f"clean extraction failed: {p.last_line}")
        return out

    @functools.cached_property
    def weights(self) -> str:
        """The untrained codec saved by the clean extraction, as --weights FILE for the rest."""
        return str(self.store / "codec_weights.pt")

    @functools.cached_property
    def trained(self) -> Path:
        """The uninterrupted reference training run on the clean store."""
        run_dir = self.work / "runs" / "reference"
        p = self.reference = self.run(*train(self.store, run_dir))
        if p.rc != 0:
            raise SetupError(f"reference training failed: {p.last_line}")
        return run_dir

    def copy_run(self, name: str) -> Path:
        dst = self.work / "runs" / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(self.trained, dst, ignore=shutil.ignore_patterns(RunDir(dst).lock.name))
        return dst

    def copy_store(self, source: Path, name: str) -> Path:
        dst = self.work / "stores" / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(source, dst)
        return dst

    @functools.cached_property
    def small_store(self) -> Path:
        """A store made with --weights FILE (no 93 MB copy of the codec), equal to the clean
        one: the base of the copies that cases damage."""
        out = self.work / "stores" / "small"
        p = self.run(*extract(self.corpus, out, "--weights", self.weights))
        if p.rc != 0:
            raise SetupError(f"extraction with --weights FILE failed: {p.last_line}")
        return out

    @functools.cached_property
    def bad_audio(self) -> tuple[Proc, Path, dict[str, str]]:
        """One extraction over a corpus of every kind of bad audio file: (its command, the
        store, {id: skip reason})."""
        root = self.work / "bad_audio"
        wavs = root / "wavs"
        wavs.mkdir(parents=True, exist_ok=True)
        speech, sr = sf.read(self.corpus / "wavs" / "DEMO-0002.wav", dtype="float32")
        texts = {}

        def write(uid: str, data, rate=sr, subtype="PCM_16", text="A sentence."):
            sf.write(wavs / f"{uid}.wav", data, rate, subtype=subtype)
            texts[uid] = text

        write("GOOD", speech)
        write("TRUNCATED", speech)
        size = (wavs / "TRUNCATED.wav").stat().st_size
        os.truncate(wavs / "TRUNCATED.wav", size // 2)
        (wavs / "ZERO.wav").write_bytes(b"")
        (wavs / "NOTAUDIO.wav").write_text("this is not a wav file\n")
        texts.update(ZERO="Zero bytes.", NOTAUDIO="Not audio.")
        write("RATE8K", speech[::3][: len(speech) // 3], rate=sr // 3)
        write("STEREO", np.stack([speech, 0.5 * speech], axis=1))
        nan = speech.copy()
        nan[100:200] = np.nan
        write("NAN", nan, subtype="FLOAT")
        write("SILENT", np.zeros_like(speech))
        write("LONG", np.tile(speech, 4))  # > --max-seconds 6
        write("SHORT", speech[len(speech) // 2 :][:50])  # speech, not the leading silence
        texts["MISSING"] = "Its audio file does not exist."
        sf.write(wavs / "NOTEXT.wav", speech, sr, subtype="PCM_16")
        write("EMPTYTEXT", speech, text="")
        lines = [f"{u}|{t}|{t}" for u, t in texts.items()]
        lines.append("GOOD|The same audio, other text.|The same audio, other text.")
        (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        out = self.work / "stores" / "bad_audio"
        p = self.run(*extract(root, out, "--weights", self.weights, "--max-seconds", "6"))
        skipped = {e["id"]: e["reason"] for e in read_skipped(out)} if out.exists() else {}
        return p, out, skipped

    @functools.cached_property
    def odd_ids(self) -> Path:
        """A manifest whose ids are paths, parents, spaces, unicode, and one they flatten to;
        one transcript is nothing but Whisper special tokens."""
        root = self.work / "odd_ids"
        root.mkdir(parents=True, exist_ok=True)
        ids = list(ODD_IDS)
        rows = ["id,path,text"]
        for i, uid in enumerate(ids):
            src = self.corpus / "wavs" / f"DEMO-{i:04d}.wav"
            shutil.copy(src, root / f"{i}.wav")
            text = SPECIAL if uid == "with space" else f"Sentence number {i}."  # '|' is fine here
            rows.append(f'"{uid}",{i}.wav,{text}')
        (root / "odd.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        return root / "odd.csv"


def bridge(*args: str) -> list[str]:
    return [PY, "-m", "codec_bridge", *args]


def extract(corpus: Path, out: Path, *args: str, format: str = "ljspeech") -> list[str]:
    return bridge("extract", "--format", format, "--input", str(corpus), "--out", str(out),
                  *EXTRACT, *args)  # fmt: skip


def train(store: Path, run_dir: Path, *sets: str, config: Path = TINY) -> list[str]:
    argv = [PY, "-m", "jtts.train", "--config", str(config), "--data", str(store)]
    return [*argv, "--workdir", str(run_dir), "--set", *TRAIN, *sets]


def sample(run_dir: Path, *args: str) -> list[str]:
    return [PY, "-m", "jtts.sample", "--workdir", str(run_dir), *args]


def codes_by_id(store: Path) -> dict[str, np.ndarray]:
    cs = CodeStore.open(store)
    return {u.id: np.array(u.codes) for u in (cs[i] for i in range(len(cs)))}


def losses(run_dir: Path) -> dict[int, float]:
    path = RunDir(run_dir).metrics
    rows = read_jsonl(path) if path.exists() else []
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def params_equal(a: Path, b: Path) -> bool:
    from jtts.checkpoint import restore_params  # jax, only for the cases that compare runs

    (_, pa, sa), (_, pb, sb) = restore_params(a, "latest"), restore_params(b, "latest")
    import jax

    leaves = zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True)
    return sa == sb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in leaves)


def wait_for(predicate: Callable[[], bool], popen: subprocess.Popen, what: str) -> None:
    while not predicate():
        if popen.poll() is not None:
            raise SetupError(f"the process ended before {what}")
        time.sleep(0.02)


def damage(run_dir: Path, step: int, kind: str) -> None:
    """What a full disk, a partial copy or a stray edit does to a checkpoint."""
    where = RunDir(run_dir).checkpoint(step)
    if kind == "truncated-params":
        big = max((p for p in (where / "params").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)  # fmt: skip
        os.truncate(big, big.stat().st_size // 2)
    elif kind == "missing-opt":
        shutil.rmtree(where / "opt")
    else:
        (where / "meta" / "metadata").write_text("{garbage")


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


# === extract: bad audio (one extraction over one corpus of them) ===========================


def _skipped_for(s: Sweep, uid: str, reason: str) -> Proc:
    p, store, skipped = s.bad_audio
    s.exit_code(p, 0)
    s.expect(reason in skipped.get(uid, ""), f"{uid}: skip reason {skipped.get(uid)!r}")
    if store.exists():
        s.expect(uid not in CodeStore.open(store).ids, f"{uid} was stored")
    return p


def _stored(s: Sweep, uid: str) -> Proc:
    p, store, skipped = s.bad_audio
    s.exit_code(p, 0)
    ids = CodeStore.open(store).ids if store.exists() else []
    s.expect(uid in ids and uid not in skipped, f"{uid} not stored ({skipped.get(uid)})")
    return p


@case("extract", "exit 0; skipped: truncated")
def case_truncated_wav(s):
    return _skipped_for(s, "TRUNCATED", "truncated")


@case("extract", "exit 0; skipped: empty file")
def case_zero_byte_wav(s):
    return _skipped_for(s, "ZERO", "empty file")


@case("extract", "exit 0; skipped: unreadable")
def case_non_audio_wav(s):
    return _skipped_for(s, "NOTAUDIO", "unreadable audio")


@case("extract", "exit 0; stored (resampled)")
def case_wrong_sample_rate(s):
    return _stored(s, "RATE8K")


@case("extract", "exit 0; stored (downmixed)")
def case_stereo_wav(s):
    return _stored(s, "STEREO")


@case("extract", "exit 0; skipped: NaN")
def case_nan_float_wav(s):
    return _skipped_for(s, "NAN", "NaN")


@case("extract", "exit 0; skipped: silent")
def case_silent_wav(s):
    return _skipped_for(s, "SILENT", "silent")


@case("extract", "exit 0; skipped: too long")
def case_too_long_wav(s):
    return _skipped_for(s, "LONG", "too long")


@case("extract", "exit 0; skipped: too short")
def case_too_short_wav(s):
    return _skipped_for(s, "SHORT", "too short")


@case("extract", "exit 0; skipped: no audio")
def case_missing_wav(s):
    return _skipped_for(s, "MISSING", "transcript without audio")


@case("extract", "exit 0; skipped: no transcript")
def case_wav_without_transcript(s):
    return _skipped_for(s, "NOTEXT", "audio without transcript")


@case("extract", "exit 0; skipped: empty transcript")
def case_empty_transcript(s):
    return _skipped_for(s, "EMPTYTEXT", "empty transcript")


@case("extract", "exit 0; stored once, repeat recorded")
def case_duplicate_id(s):
    p, store, _ = s.bad_audio
    s.exit_code(p, 0)
    entries = [e for e in read_skipped(store) if e["id"] == "GOOD"]
    s.expect(len(entries) == 1 and "duplicate id" in entries[0]["reason"], f"GOOD: {entries}")
    s.expect(CodeStore.open(store).ids.count("GOOD") == 1, "GOOD is not stored exactly once")
    s.verify_clean(store)
    return p


# === extract: transcripts, manifests and ids ===============================================


@case("extract", "exit 2; one line: metadata.csv:2, not UTF-8", quick=True)
def case_latin1_metadata(s):
    root = s.work / "latin1"
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    (root / "metadata.csv").write_bytes(b"A|Fine.|Fine.\nB|Caf\xe9 au lait.|Caf\xe9 au lait.\n")
    p = s.run(*extract(root, s.work / "stores" / "latin1", "--weights", "untrained"))
    return s.user_error(p, "metadata.csv:2", "not UTF-8")


@case("extract", "exit 0; BOM accepted, row stored")
def case_bom_manifest(s):
    root = s.work / "bom"
    root.mkdir(exist_ok=True)
    shutil.copy(s.corpus / "wavs" / "DEMO-0003.wav", root / "a.wav")
    (root / "list.csv").write_text("\ufeffpath,text\na.wav,A sentence.\n", encoding="utf-8")
    out = s.work / "stores" / "bom"
    p = s.run(*extract(root / "list.csv", out, "--weights", s.weights, format="manifest"))
    s.exit_code(p, 0)
    s.expect(out.exists() and CodeStore.open(out).ids == ["a"], "the row was not stored as 'a'")
    return p


@case("extract", "exit 2; one line: file:row, needs path and text", quick=True)
def case_manifest_missing_columns(s):
    (s.work / "cols.csv").write_text("file,transcript\na.wav,Hello.\n", encoding="utf-8")
    p = s.run(*extract(s.work / "cols.csv", s.work / "stores" / "cols", "--weights", "untrained",
                       format="manifest"))  # fmt: skip
    return s.user_error(p, "cols.csv:2", "'path' and 'text'")


@case("extract", "exit 2; one line: file:line, not JSON", quick=True)
def case_manifest_bad_json_line(s):
    (s.work / "bad.jsonl").write_text('{"path": "a.wav", "text": "x"}\n{"path": \n')
    p = s.run(*extract(s.work / "bad.jsonl", s.work / "stores" / "badjson", "--weights",
                       "untrained", format="manifest"))  # fmt: skip
    return s.user_error(p, "bad.jsonl:2", "not a JSON object")


@case("extract", "exit 2; one line naming the --input path", quick=True)
def case_missing_input(s):
    p = s.run(*extract(s.work / "nowhere", s.work / "stores" / "nowhere", "--weights", "untrained"))
    return s.user_error(p, str(s.work / "nowhere"))


@case("extract", "exit 0; ids kept as written, verify clean")
def case_odd_ids(s):
    out = s.work / "stores" / "odd_ids"
    p = s.run(*extract(s.odd_ids, out, "--weights", s.weights, format="manifest"))
    s.exit_code(p, 0)
    s.expect(out.exists() and sorted(CodeStore.open(out).ids) == sorted(ODD_IDS), "ids changed")
    s.verify_clean(out)
    return p


@case("extract", "exit 0; special-token and huge transcripts stored verbatim")
def case_odd_transcripts(s):
    store = s.work / "stores" / "odd_ids"
    made = s.run(*extract(s.odd_ids, store, "--weights", s.weights, format="manifest"))
    s.exit_code(made, 0)
    cs, clean = CodeStore.open(store), CodeStore.open(s.store)
    special = cs.get("with space").text
    s.expect(special == SPECIAL, f"special tokens stored as {special!r}")
    s.expect(len(clean.get("HUGE").text) > 19000, "HUGE not stored whole")
    return made


# === extract: interference =================================================================


@case("extract", "exit 0 and 0/2 (one line: in use by pid); all stored once, codes equal")
def case_two_extracts_at_once(s):
    out = s.work / "stores" / "twice"
    shutil.rmtree(out, ignore_errors=True)
    argv = extract(s.corpus, out, "--weights", s.weights, "--part-utterances", "1")
    procs = [s.start(*argv) for _ in range(2)]
    done = sorted((s.finish(p) for p in procs), key=lambda p: p.rc)
    s.expect([p.rc for p in done] in ([0, 0], [0, 2]), f"exits {[p.rc for p in done]}")
    if done[1].rc == 2:
        s.one_line_error(done[1], "is in use by pid")
    s.verify_clean(out)
    s.same_codes(out)
    return done[-1]


@case("extract", "killed run: re-run exit 0; verify clean, codes equal a clean run")
def case_kill_9_mid_extract(s):
    out = s.work / "stores" / "killed"
    shutil.rmtree(out, ignore_errors=True)
    argv = extract(s.corpus, out, "--weights", s.weights, "--part-utterances", "1")
    popen = s.start(*argv)
    committed = lambda: any(not p.parent.name.startswith(".") for p in out.glob("shards/*/*"))  # noqa: E731
    wait_for(committed, popen, "its first part")
    popen.send_signal(signal.SIGKILL)
    s.finish(popen)
    p = s.run(*argv)
    s.exit_code(p, 0)
    earlier = re.search(r"(\d+) done by earlier runs", p.out)
    s.expect(bool(earlier) and int(earlier.group(1)) > 0, "nothing was resumed")
    s.verify_clean(out)
    s.same_codes(out)
    return p


@case("extract", "exit 2; one line: cannot write to the store")
def case_read_only_store(s):
    store = s.copy_store(s.small_store, "read_only")
    argv = extract(s.odd_ids, store, "--weights", s.weights, format="manifest")
    setup = f"mount --bind {store} {store}\nmount -o remount,bind,ro {store}"
    p = s.in_namespace("ro", [("extract", argv)], setup)["extract"]
    s.user_error(p, str(store), "cannot write to the store")
    s.verify_clean(store)
    return p


@case("extract", "exit 2; one line: no space left; no temp files; room: exit 0, verify clean")
def case_full_disk_extract(s):
    disk = s.work / "disk_extract"
    store = disk / "store"
    argv = extract(s.corpus, store, "--weights", s.weights, "--part-utterances", "2")
    q = shlex.quote(str(disk))
    found = s.work / "ns" / "tmp_files"
    procs = s.in_namespace(
        "disk_extract",
        [
            ("full", argv),
            ("sh", ["sh", f"find {q} -name '.tmp-*' -o -name '*.tmp' > {shlex.quote(str(found))}"]),
            ("sh", ["sh", f"mount -o remount,size=16m {q}"]),
            ("room", argv),
            ("verify", bridge("verify", str(store))),
        ],
        f"mkdir -p {q}\nmount -t tmpfs -o size=48k tmpfs {q}",
    )
    s.user_error(procs["full"], "no space left on device")
    s.expect(not found.read_text().strip(), f"temporary files left: {found.read_text().split()}")
    s.exit_code(procs["room"], 0)
    s.expect(procs["verify"].out.strip() == "ok", f"verify: {procs['verify'].text.strip()}")
    return procs["full"]


@case("extract", "verify exit 1 naming the changed file")
def case_shard_changed_in_place_verify(s):
    store = s.copy_store(s.small_store, "changed")
    codes = sorted(store.glob("shards/*/codes.npy"))[0]
    flip_last_byte(codes)
    p = s.run(*bridge("verify", str(store)))
    s.exit_code(p, 1)
    s.expect(str(codes) in p.out or codes.parent.name in p.out, "verify does not name the file")
    return p


# === train =================================================================================


@case("train", "exit 0 on an overlong transcript (dropped, counted)")
def case_train_reference(s):
    s.expect(RunDir(s.trained).checkpoint(12).is_dir(), "no checkpoint of step 12")
    p = s.reference
    s.expect("1 dropped (text > 64 tokens)" in p.out, "the huge transcript was not counted")
    return p


@case("train", "exit 2; one line naming n_codebooks")
def case_train_wrong_codebook_count(s):
    store = s.work / "stores" / "four_codebooks"
    made = s.run(*extract(s.corpus, store, "--weights", s.weights, "--bandwidth", "3",
                          "--limit", "2"))  # fmt: skip
    s.exit_code(made, 0)
    p = s.run(*train(store, s.work / "runs" / "four_codebooks"))
    return s.user_error(p, "n_codebooks")


@case("train", "second trainer exit 2 (one line: pid, host); kill -9, resume bit-identical")
def case_two_trainers_then_kill_9(s):
    run_dir = s.work / "runs" / "killed"
    shutil.rmtree(run_dir, ignore_errors=True)
    argv = train(s.store, run_dir)
    first = s.start(*argv)
    try:
        wait_for(lambda: max(losses(run_dir), default=0) >= 5, first, "step 5")
        first.send_signal(signal.SIGSTOP)  # holds its lock while the second one tries
        second = s.run(*argv)
    finally:
        first.send_signal(signal.SIGKILL)
        s.finish(first)
    s.user_error(second, "in use by pid", os.uname().nodename)
    s.expect(max(losses(run_dir)) < 12, "the killed run had already finished")
    p = s.run(*argv)
    s.exit_code(p, 0)
    s.expect("resumed from step" in p.out, "did not resume")
    s.same_run(run_dir)
    return second


def _damaged_resume(s: Sweep, kind: str) -> Proc:
    run_dir = s.copy_run(f"damaged-{kind}")
    damage(run_dir, 12, kind)
    p = s.run(*train(s.store, run_dir))
    s.exit_code(p, 0)
    warn = [ln for ln in p.err.splitlines() if "damaged checkpoint" in ln]
    s.expect(len(warn) == 1 and "step 12 (" in warn[0] and warn[0].endswith("using step 8"),
             f"warning: {warn}")  # fmt: skip
    s.same_run(run_dir)
    return p


@case("train", "exit 0; one-line warning naming step 12; resumed from 8, bit-identical")
def case_train_damaged_checkpoint_truncated(s):
    return _damaged_resume(s, "truncated-params")


@case("train", "exit 0; one-line warning naming step 12; resumed from 8, bit-identical")
def case_train_damaged_checkpoint_missing_dir(s):
    return _damaged_resume(s, "missing-opt")


@case("train", "exit 0; one-line warning naming step 12; resumed from 8, bit-identical")
def case_train_damaged_checkpoint_garbage_json(s):
    return _damaged_resume(s, "garbage-meta")


@case("train", "exit 2; one line: no intact checkpoint, naming both steps")
def case_train_no_intact_checkpoint(s):
    run_dir = s.copy_run("all-damaged")
    damage(run_dir, 12, "garbage-meta")
    damage(run_dir, 8, "truncated-params")
    p = s.run(*train(s.store, run_dir))
    s.user_error(p, "no intact checkpoint", "step 12", "step 8")
    return p


@case("train", "exit 2; one line: no space left (naming the path); room: resume bit-identical")
def case_full_disk_training(s):
    disk = s.work / "disk_train"
    run_dir = disk / "run"
    argv = train(s.store, run_dir)
    q = shlex.quote(str(disk))
    kept = s.work / "runs" / "after_full_disk"
    procs = s.in_namespace(
        "disk_train",
        [
            ("full", argv),
            ("sh", ["sh", f"mount -o remount,size=400m {q}"]),
            ("room", argv),
            (
                "sh",
                [
                    "sh",
                    f"rm -rf {shlex.quote(str(kept))}; cp -r {shlex.quote(str(run_dir))} "
                    f"{shlex.quote(str(kept))}",
                ],
            ),  # fmt: skip
        ],
        f"mkdir -p {q}\nmount -t tmpfs -o size=2m tmpfs {q}",
    )
    s.user_error(procs["full"], "no space left", str(run_dir))
    s.exit_code(procs["room"], 0)
    if kept.exists():
        s.same_run(kept)
    return procs["full"]


@case("train", "exit 2; one line naming the changed shard")
def case_train_shard_changed_in_place(s):
    store = s.copy_store(s.small_store, "changed_train")
    codes = sorted(store.glob("shards/*/codes.npy"))[0]
    flip_last_byte(codes)
    p = s.run(*train(store, s.work / "runs" / "changed"))
    return s.user_error(p, str(codes), "checksum mismatch")


@case("train", "exit 2; one line naming the missing shard file")
def case_train_shard_file_missing(s):
    store = s.copy_store(s.small_store, "missing_file")
    index = sorted(store.glob("shards/*/index.npy"))[0]
    index.unlink()
    p = s.run(*train(store, s.work / "runs" / "missing_file"))
    return s.user_error(p, str(index.parent))


@case("train", "exit 2; one line naming the --data path", quick=True)
def case_train_missing_store(s):
    p = s.run(*train(s.work / "no_store", s.work / "runs" / "no_store"))
    return s.user_error(p, str(s.work / "no_store"))


@case("train", "exit 2; one line naming the unknown key", quick=True)
def case_train_unknown_set_key(s):
    p = s.run(*train(s.work / "unused_store", s.work / "runs" / "bad_key", "optim.learning_rate=1"))
    return s.user_error(p, "optim.learning_rate")


@case("train", "exit 2; one line naming the key and value", quick=True)
def case_train_bad_set_value(s):
    p = s.run(*train(s.work / "unused_store", s.work / "runs" / "bad_value", "train.steps=many"))
    return s.user_error(p, "train.steps", "many")


@case("train", "exit 2; one line naming the override", quick=True)
def case_train_set_unparsable_value(s):
    p = s.run(
        *train(s.work / "unused_store", s.work / "runs" / "bad_yaml", "data.bucket_sizes=[96")
    )
    return s.user_error(p, "data.bucket_sizes=[96")


@case("train", "exit 2; one line: --set without =", quick=True)
def case_train_set_without_equals(s):
    p = s.run(*train(s.work / "unused_store", s.work / "runs" / "no_equals", "train.steps"))
    return s.user_error(p, "train.steps")


@case("train", "exit 2; one line naming the config path", quick=True)
def case_train_missing_config(s):
    missing = s.work / "nope.yaml"
    p = s.run(*train(s.work / "unused_store", s.work / "runs" / "no_config", config=missing))
    return s.user_error(p, str(missing))


@case("train", "exit 2; one line naming the config file", quick=True)
def case_train_garbage_config(s):
    bad = s.work / "garbage.yaml"
    bad.write_text("model: [d_model: 64\n  oops: {\n")
    p = s.run(*train(s.work / "unused_store", s.work / "runs" / "garbage_config", config=bad))
    return s.user_error(p, str(bad))


@case("train", "exit 0; sample files named safely, ids in sidecars, nothing outside the run")
def case_train_odd_ids(s):
    store = s.work / "stores" / "odd_ids"
    if not store.exists():
        s.run(*extract(s.odd_ids, store, "--weights", s.weights, format="manifest"))
    run_dir = s.work / "runs" / "odd_ids"
    shutil.rmtree(run_dir, ignore_errors=True)
    sets = ("train.steps=2", "data.val_fraction=0.5", "eval.every=2", "eval.num_samples=3",
            "eval.sample_max_seconds=0.1")  # fmt: skip
    p = s.run(*train(store, run_dir, *sets))
    s.exit_code(p, 0)
    samples = RunDir(run_dir).samples_dir
    sidecars = list(samples.rglob("*.json"))
    ids = {json.loads(f.read_text(encoding="utf-8"))["id"] for f in sidecars}
    val = {u for u in ODD_IDS if split_of(u, 0.5) == "val"}
    s.expect(len(ids) == 3 and ids <= val, f"sample ids {ids}, validation ids {val}")
    s.expect(all(f.parent.parent == samples for f in sidecars), "a sample escaped")
    outside = [f for f in s.work.rglob("escape*") if samples not in f.parents]
    s.expect(not outside, "a file named after '../../escape' was written outside the samples")
    return p


# === sample ================================================================================


@case("sample", "exit 2; one line: --text is empty", quick=True)
def case_sample_empty_text(s):
    p = s.run(*sample(s.work / "runs" / "unused", "--text", "  ", "--out", str(s.work / "x.wav")))
    return s.user_error(p, "--text")


@case("sample", "exit 2; one line naming the token count")
def case_sample_overlong_text(s):
    out = str(s.work / "long.npy")
    p = s.run(*sample(s.trained, "--text", "word " * 400, "--codes-out", out))
    return s.user_error(p, "text tokens", "--split-sentences")


@case("sample", "exit 2; one line naming file:line, not UTF-8")
def case_sample_text_file_not_utf8(s):
    path = s.work / "lines.txt"
    path.write_bytes(b"Hello there.\nCaf\xe9.\n")
    p = s.run(*sample(s.trained, "--text-file", str(path), "--codes-out", str(s.work / "c")))
    return s.user_error(p, f"{path}:2", "not UTF-8")


@case("sample", "exit 2; one line naming the missing workdir", quick=True)
def case_sample_missing_workdir(s):
    missing = s.work / "runs" / "never_trained"
    p = s.run(*sample(missing, "--text", "Hello.", "--codes-out", str(s.work / "c.npy")))
    return s.user_error(p, str(missing))


@case("sample", "exit 2; one line: no checkpoints", quick=True)
def case_sample_workdir_without_checkpoints(s):
    empty = s.work / "runs" / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    p = s.run(*sample(empty, "--text", "Hello.", "--codes-out", str(s.work / "c.npy")))
    return s.user_error(p, str(empty), "no checkpoints")


@case("sample", "exit 2; one line naming --max-seconds 0", quick=True)
def case_sample_max_seconds_zero(s):
    p = s.run(
        *sample(
            s.work / "runs" / "unused",
            "--text",
            "Hi.",
            "--out",
            str(s.work / "x.wav"),
            "--max-seconds",
            "0",
        )
    )
    return s.user_error(p, "--max-seconds", "0")


@case("sample", "exit 2; one line naming --max-seconds -3", quick=True)
def case_sample_max_seconds_negative(s):
    p = s.run(
        *sample(
            s.work / "runs" / "unused",
            "--text",
            "Hi.",
            "--out",
            str(s.work / "x.wav"),
            "--max-seconds",
            "-3",
        )
    )
    return s.user_error(p, "--max-seconds", "-3")


@case("sample", "exit 2; one line naming step 99 and the saved steps")
def case_sample_missing_step(s):
    p = s.run(*sample(s.trained, "--text", "Hi.", "--codes-out", str(s.work / "c.npy"),
                      "--step", "99"))  # fmt: skip
    return s.user_error(p, "99")


def _damaged_sample(s: Sweep, kind: str) -> Proc:
    run_dir = s.copy_run(f"sample-{kind}")
    damage(run_dir, 12, kind)
    out = s.work / f"sample-{kind}.npy"
    p = s.run(*sample(run_dir, "--text", "Hello.", "--codes-out", str(out), "--max-seconds",
                      "0.2"))  # fmt: skip
    s.exit_code(p, 0)
    warn = [ln for ln in p.err.splitlines() if "damaged checkpoint" in ln]
    if kind == "missing-opt":  # inference never reads the optimizer state
        s.expect(not warn and "checkpoint step 12" in p.out, "did not use step 12")
    else:
        s.expect(len(warn) == 1 and "step 12 (" in warn[0] and "using step 8" in warn[0],
                 f"warning: {warn}")  # fmt: skip
        s.expect("checkpoint step 8" in p.out, "did not use step 8")
    s.expect(out.exists(), "no codes written")
    return p


@case("sample", "exit 0; one-line warning naming step 12; step 8 used")
def case_sample_damaged_checkpoint_truncated(s):
    return _damaged_sample(s, "truncated-params")


@case("sample", "exit 0; step 12 used (optimizer state is not read)")
def case_sample_damaged_checkpoint_missing_dir(s):
    return _damaged_sample(s, "missing-opt")


@case("sample", "exit 0; one-line warning naming step 12; step 8 used")
def case_sample_damaged_checkpoint_garbage_json(s):
    return _damaged_sample(s, "garbage-meta")


@case("sample", "exit 0; special tokens read as plain text, wav written")
def case_sample_special_tokens_to_wav(s):
    out = s.work / "special.wav"
    text = f"Hello {SPECIAL} there."
    p = s.run(*sample(s.trained, "--text", text, "--out", str(out), "--max-seconds", "0.3"))
    s.exit_code(p, 0)
    s.expect(out.exists() and sf.info(str(out)).frames > 0, "no wav written")
    return p


@case("sample", "exit 2; one line: empty after normalization (the normalizer drops <|...|>)")
def case_sample_only_special_tokens(s):
    p = s.run(*sample(s.trained, "--text", SPECIAL, "--codes-out", str(s.work / "c.npy")))
    return s.user_error(p, "--text", "empty after normalization")


# Text no model can read, or no reader expects (issue 25): exit 0 with codes, or exit 2 with one
# line naming the problem, never a traceback.
ODD_TEXTS = {
    "empty": "",
    "only-punctuation": "?!... ;-- «»",
    "only-emoji": "🎉🙂👩‍👩‍👧‍👦",
    "control-characters": "hi\x07 there\x1b[0m \x7f",
    "chinese": "你好，世界",
    "arabic": "مرحبا بالعالم",
}
LONG_TEXT = ("The quick brown fox jumps over the lazy dog. " * 445)[:20_000]


def _odd_text(s: Sweep, name: str, *args: str) -> tuple[Proc, Path]:
    out = s.work / f"odd-{name}.npy"
    out.unlink(missing_ok=True)
    run_dir = s.work / "runs" / "unused" if name == "empty" else s.trained
    p = s.run(*sample(run_dir, "--text", ODD_TEXTS[name], "--codes-out", str(out),
                      "--max-seconds", "0.1", *args))  # fmt: skip
    return p, out


@case("sample", "exit 2; one line: --text is empty", quick=True)
def case_sample_text_empty_string(s):
    return s.user_error(_odd_text(s, "empty")[0], "--text is empty")


@case("sample", "exit 2; one line: --text empty after normalization")
def case_sample_text_only_punctuation(s):
    return s.user_error(_odd_text(s, "only-punctuation")[0], "--text", "empty after normalization")


@case("sample", "exit 2; one line: --text empty after normalization")
def case_sample_text_only_emoji(s):
    return s.user_error(_odd_text(s, "only-emoji")[0], "--text", "empty after normalization")


def _spoken(s: Sweep, name: str) -> Proc:
    p, out = _odd_text(s, name, "--print-normalized")
    s.exit_code(p, 0)
    s.expect(out.exists(), "no codes written")
    return p


@case("sample", "exit 0; control characters spoken around, codes written")
def case_sample_text_control_characters(s):
    return _spoken(s, "control-characters")


@case("sample", "exit 0; Chinese text read as tokens, codes written")
def case_sample_text_chinese(s):
    return _spoken(s, "chinese")


@case("sample", "exit 0; Arabic text read as tokens, codes written")
def case_sample_text_arabic(s):
    return _spoken(s, "arabic")


@case("sample", "exit 0 with --split-sentences: 445 sentences spoken and joined")
def case_sample_text_20000_characters(s):
    out = s.work / "long20k.npy"
    p = s.run(*sample(s.trained, "--text", LONG_TEXT, "--codes-out", str(out), "--split-sentences",
                      "--max-seconds", "0.05", "--batch-size", "512", "--print-normalized"))  # fmt: skip
    s.exit_code(p, 0)
    s.expect(out.exists(), "no codes written")
    said = p.out.splitlines()[0] if p.out else ""
    s.expect(said.startswith("the quick brown fox"), f"no normalized line: {said[:60]!r}")
    return p


@case("sample", "exit 2 without --split-sentences: one line naming the token count and the fix")
def case_sample_text_20000_characters_unsplit(s):
    out = str(s.work / "long20k.npy")
    p = s.run(*sample(s.trained, "--text", LONG_TEXT, "--codes-out", out))
    return s.user_error(p, "text tokens", "--split-sentences")


# Voice inputs (issue 26): a speaker the run does not know, and voice prompts the codec refuses
# (exit 2, one line naming --prompt-wav and the problem) or converts (stereo is mixed down,
# 8 kHz resampled: exit 0, the prompt's 2 s read as 150 codec frames).
SPEAKER_RUN = ("model.conditions=[{name: speaker}]", "train.steps=1", "checkpoint.every=1")


@case("sample", "exit 2; one line: --speaker on a run trained without speakers")
def case_sample_speaker_on_run_without_speakers(s):
    p = s.run(*sample(s.trained, "--text", "Hi.", "--codes-out", str(s.work / "c.npy"),
                      "--speaker", "nobody"))  # fmt: skip
    return s.user_error(p, "--speaker", str(s.trained), "not trained with a speaker")


@case("sample", "exit 2; one line naming the unknown speaker and the known ones")
def case_sample_speaker_unknown(s):
    run_dir = s.work / "runs" / "speakers"
    made = s.run(*train(s.store, run_dir, *SPEAKER_RUN))
    s.exit_code(made, 0)
    p = s.run(*sample(run_dir, "--text", "Hi.", "--codes-out", str(s.work / "c.npy"),
                      "--speaker", "nobody"))  # fmt: skip
    return s.user_error(p, "--speaker", "unknown speaker 'nobody'", "known: ")


def _prompt_wav(
    s: Sweep, name: str, seconds: float = 2.0, rate: int = 24000, channels: int = 1, peak=0.3
) -> Path:
    """A noise clip (the untrained model has no voice to match) as a voice prompt file."""
    path = s.work / "prompts" / f"{name}.wav"
    path.parent.mkdir(exist_ok=True)
    noise = np.random.default_rng(0).uniform(-peak, peak, (round(seconds * rate), channels))
    sf.write(path, noise, rate, subtype="PCM_16")
    return path


def _prompted(s: Sweep, wav: Path, *args: str) -> Proc:
    return s.run(*sample(s.trained, "--text", "Hello.", "--prompt-wav", str(wav),
                         "--max-seconds", "0.2", *args))  # fmt: skip


def _bad_prompt(s: Sweep, wav: Path, problem: str) -> Proc:
    p = _prompted(s, wav, "--codes-out", str(s.work / "c.npy"))
    return s.user_error(p, f"--prompt-wav {wav}: {problem}")


@case("sample", "exit 2; one line naming --prompt-wav and 'no such file'")
def case_sample_prompt_missing(s):
    return _bad_prompt(s, s.work / "prompts" / "never_recorded.wav", "no such file")


@case("sample", "exit 2; one line naming --prompt-wav and 'unreadable audio'")
def case_sample_prompt_not_audio(s):
    path = s.work / "prompts" / "not_audio.wav"
    path.parent.mkdir(exist_ok=True)
    path.write_text("this is not a wav file\n")
    return _bad_prompt(s, path, "unreadable audio")


@case("sample", "exit 2; one line naming --prompt-wav and 'silent'")
def case_sample_prompt_silent(s):
    return _bad_prompt(s, _prompt_wav(s, "silent", peak=0), "silent (peak below -80 dBFS)")


@case("sample", "exit 2; one line naming --prompt-wav, 0.30 s and the 1 s minimum")
def case_sample_prompt_too_short(s):
    path = _prompt_wav(s, "short", seconds=0.3)
    return _bad_prompt(s, path, "too short (0.30 s < --min-seconds 1)")


@case("sample", "exit 2; one line naming --prompt-wav, 15.0 s and the 10 s maximum")
def case_sample_prompt_too_long(s):
    path = _prompt_wav(s, "long", seconds=15)
    return _bad_prompt(s, path, "too long (15.0 s > --max-seconds 10)")


def _accepted_prompt(s: Sweep, wav: Path) -> Proc:
    out, codes = s.work / f"{wav.stem}.wav", s.work / f"{wav.stem}.npy"
    for stale in (out, codes):
        stale.unlink(missing_ok=True)
    p = _prompted(s, wav, "--prompt-text", "A sentence.", "--out", str(out), "--codes-out",
                  str(codes))  # fmt: skip
    s.exit_code(p, 0)
    if not s.expect(out.exists() and codes.exists(), "no wav or codes written"):
        return p
    spoken, meta = load_codes(codes)
    frames, rate = meta["prompt"]["frames"], meta["frame_rate"]
    s.expect(frames == 2 * rate, f"the 2 s prompt gave {frames} codec frames at {rate:g} Hz")
    hop = meta["sample_rate"] / rate
    s.expect(sf.info(str(out)).frames == spoken.shape[1] * hop, "the wav holds more than the text")
    return p


@case("sample", "exit 0; stereo prompt mixed down, speech written")
def case_sample_prompt_stereo(s):
    return _accepted_prompt(s, _prompt_wav(s, "stereo", channels=2))


@case("sample", "exit 0; 8 kHz prompt resampled, speech written")
def case_sample_prompt_8khz(s):
    return _accepted_prompt(s, _prompt_wav(s, "rate8k", rate=8000))


@case("sample", "exit 2; one line: --prompt-text needs --prompt-wav", quick=True)
def case_sample_prompt_text_without_wav(s):
    p = s.run(*sample(s.work / "runs" / "unused", "--text", "Hi.", "--codes-out",
                      str(s.work / "c.npy"), "--prompt-text", "What the clip says."))  # fmt: skip
    return s.user_error(p, "--prompt-text", "--prompt-wav")


# === decode and the other bridge commands ===================================================


def _codes_file(s: Sweep, name: str, codes) -> Path:
    path = s.work / "codes" / f"{name}.npy"
    path.parent.mkdir(exist_ok=True)
    meta = json.loads((s.store / "meta.json").read_text())
    save_codes(path, np.zeros((8, 4)), {**meta, "store_dir": str(s.store)})
    np.save(path, codes)
    return path


@case("decode", "exit 2; one line naming the file and shape")
def case_decode_wrong_shape(s):
    path = _codes_file(s, "shape", np.zeros((2, 8, 10), np.uint16))
    p = s.run(*bridge("decode", str(path), "--out", str(s.work / "x.wav"), "--device", "cpu"))
    return s.user_error(p, str(path))


@case("decode", "exit 2; one line naming the file and the bad code")
def case_decode_out_of_range_codes(s):
    codes = np.zeros((8, 10), np.uint16)
    codes[3, 4] = 5000
    path = _codes_file(s, "range", codes)
    p = s.run(*bridge("decode", str(path), "--out", str(s.work / "x.wav"), "--device", "cpu"))
    return s.user_error(p, str(path), "5000")


@case("decode", "exit 2; one line naming the file")
def case_decode_garbage_file(s):
    path = _codes_file(s, "garbage", np.zeros((8, 4), np.uint16))
    path.write_bytes(b"not numpy at all")
    p = s.run(*bridge("decode", str(path), "--out", str(s.work / "x.wav"), "--device", "cpu"))
    return s.user_error(p, str(path))


@case("bridge", "exit 1 (a problem found); one line naming the store path", quick=True)
def case_verify_not_a_store(s):
    p = s.run(*bridge("verify", str(s.work / "no_store")))
    s.exit_code(p, 1)
    lines = [ln for ln in p.text.splitlines() if ln.strip()]
    s.expect(len(lines) == 1 and str(s.work / "no_store") in lines[0], f"output: {lines}")
    return p


@case("bridge", "exit 2; one line naming the unknown key", quick=True)
def case_codec_train_unknown_set_key(s):
    p = s.run(*bridge("train", "--format", "ljspeech", "--input", str(s.corpus), "--out",
                      str(s.work / "codec_run"), "--config", "tiny", "--set", "train.nope=1",
                      "--steps", "1", "--threads", "1"))  # fmt: skip
    return s.user_error(p, "train.nope")


# === the sweep =============================================================================


def short(argv: list[str], work: Path) -> str:
    text = shlex.join("python" if a == PY else a for a in argv)
    text = text.replace(str(work), "$W").replace(str(ROOT) + "/", "")
    return text if len(text) <= 110 else text[:107] + "..."


def run_case(s: Sweep, c: Case) -> dict:
    s.procs, s.problems = [], []
    t0 = time.perf_counter()
    try:
        main = c.run(s)
    except Exception as e:  # noqa: BLE001 (a broken case is a failed case, not a stopped sweep)
        main = None
        s.problems.append(f"{type(e).__name__}: {e}")
    for p in s.procs:
        if "Traceback" in p.text:
            s.problems.append(f"traceback from {short(p.argv, s.work)}")
        elif p.rc not in (0, 1, 2, 130, -signal.SIGKILL):
            s.problems.append(f"exit {p.rc} from {short(p.argv, s.work)}")
    return {
        "case": c.name,
        "area": c.area,
        "command": short(main.argv, s.work) if main and main.argv else "",
        "expected": c.expected,
        "exit": main.rc if main else None,
        "message": main.last_line[:160] if main else "",
        "verdict": "pass" if not s.problems else "FAIL: " + "; ".join(dict.fromkeys(s.problems)),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        out.append(f"{r['case']:<44} {r['verdict'][:100]}")
        out.append(f"    $ {r['command']}")
        out.append(f"    expected: {r['expected']} | exit {r['exit']} | {r['message'][:110]}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="work directory (default: a new temporary one, removed)")
    ap.add_argument("--out", help="write the JSON report here")
    ap.add_argument("--only", nargs="+", help="run only these cases (and what they need)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(f"{c.area:<8} {c.name}" for c in CASES))
        return 0
    chosen = sorted((c for c in CASES if not a.only or c.name in a.only), key=lambda c: not c.quick)
    if a.only and len(chosen) != len(set(a.only)):
        unknown = set(a.only) - {c.name for c in CASES}
        ap.error(f"unknown cases: {', '.join(sorted(unknown))} (see --list)")
    work = Path(a.work or tempfile.mkdtemp(prefix="jtts-adversarial-")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    sweep, rows, t0 = Sweep(work), [], time.perf_counter()
    for c in chosen:
        rows.append(run_case(sweep, c))
        r = rows[-1]
        print(f"[{time.perf_counter() - t0:6.0f} s] {r['case']}: {r['verdict'][:120]}", flush=True)
    failed = [r["case"] for r in rows if r["verdict"] != "pass"]
    report = {
        "cases": len(rows),
        "passed": len(rows) - len(failed),
        "failed": failed,
        "minutes": round((time.perf_counter() - t0) / 60, 1),
        "rows": rows,
    }
    print(table(rows))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
