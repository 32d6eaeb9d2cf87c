"""``python -m codec_bridge {extract,join,info,verify,decode,encode,train,evaluate,export}``: argparse over the Python API.

Exit codes: 0 ok, 1 ``verify`` found problems, 2 bad input, arguments or setup (unreadable
files, a busy, read-only or full store: one line on stderr), 130 interrupted (what was done
is committed; re-run to resume).
"""

from __future__ import annotations

import argparse
import json
import sys

from codec_bridge.errors import BridgeError
from codec_bridge.judge.cli import add_evaluate, run_evaluate
from codec_bridge.readers import READERS
from codec_bridge.training.cli import add_export, add_train, run_export, run_train

BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line, like every other error of the tool."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="codec_bridge", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ex = sub.add_parser("extract", help="encode a corpus into a code store (resumable)")
    ex.add_argument("--format", required=True, choices=sorted(READERS), help="corpus layout")
    ex.add_argument("--input", required=True, help="corpus folder (or manifest file)")
    ex.add_argument("--out", required=True, help="store directory (created or resumed)")
    ex.add_argument("--model", default="24khz", choices=["24khz", "48khz"])
    ex.add_argument(
        "--bandwidth", type=float, default=6.0, choices=BANDWIDTHS, help="kbps (default 6)"
    )
    ex.add_argument(
        "--weights", default="pretrained", help="pretrained | untrained | FILE (state dict)"
    )
    ex.add_argument("--device", default="auto", help="cpu | cuda | auto")
    ex.add_argument(
        "--batch-seconds", type=float, default=80.0, help="seconds of padded audio per batch"
    )
    ex.add_argument("--num-shards", type=int, default=1, help="split the corpus over N processes")
    ex.add_argument("--shard-index", type=int, default=0, help="which of the N this process is")
    ex.add_argument("--limit", type=int, default=None, help="only the first N utterances by id")
    ex.add_argument("--max-seconds", type=float, default=60.0, help="skip longer utterances")
    ex.add_argument("--workers", type=int, default=2, help="audio reading threads")
    ex.add_argument(
        "--threads",
        type=int,
        default=None,
        help="batches encoded at once, each on cores/N threads (default: cores; 1 on CUDA)",
    )
    ex.add_argument("--seed", type=int, default=0, help="seed of untrained weights")
    ex.add_argument("--part-utterances", type=int, default=2000, help="commit a part every N")
    ex.add_argument("--part-seconds", type=float, default=3600.0, help="... or every S s of audio")
    ex.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    jo = sub.add_parser("join", help="several corpora -> one manifest with a speaker column")
    jo.add_argument("sources", nargs="+", help="[NAME=]PATH[@START:STOP] (speaker, corpus, slice)")
    jo.add_argument("--out", required=True, help="MANIFEST.csv to write")
    jo.add_argument("--format", default="ljspeech", choices=sorted(READERS), help="corpus layout")
    inf = sub.add_parser("info", help="what a store holds")
    inf.add_argument("store")
    inf.add_argument("--val-fraction", type=float, default=0.05)
    inf.add_argument("--json", action="store_true", help="print JSON")

    ver = sub.add_parser("verify", help="check a store's checksums and indexes")
    ver.add_argument("store")

    de = sub.add_parser("decode", help="codes -> 16-bit WAV with the store's codec")
    de.add_argument("codes", nargs="?", help="CODES.npy (meta from its .json sidecar or --meta)")
    de.add_argument("--meta", help="META.json for CODES.npy")
    de.add_argument("--store", help="store directory (with --id; also locates untrained weights)")
    de.add_argument("--id", dest="utt_id", help="utterance id in --store")
    de.add_argument("--out", help="OUT.wav")
    de.add_argument("--in-dir", help="decode every .npy here ...")
    de.add_argument("--out-dir", help="... into DIR/{name}.wav")
    de.add_argument("--weights", help="codec weights FILE (default: what the meta records)")
    de.add_argument("--device", default="auto", help="cpu | cuda | auto")
    de.add_argument(
        "--wait",
        action="store_true",
        help="import torch and the codec's code, then wait for a line 'go' on stdin before "
        "reading the codes and the codec's weights: a caller starts the decoder while it "
        "still makes the codes",
    )
    en = sub.add_parser("encode", help="one audio file -> CODES.npy with a store's codec")
    en.add_argument("audio", help="IN.wav (other rates are resampled, stereo is mixed down)")
    en.add_argument("--out", required=True, help="CODES.npy (its .json sidecar records the codec)")
    en.add_argument("--meta", help="META.json of the codec (a store's meta or a codes sidecar)")
    en.add_argument("--store", help="store directory (its meta; also locates untrained weights)")
    en.add_argument("--weights", help="codec weights FILE (default: what the meta records)")
    en.add_argument("--device", default="auto", help="cpu | cuda | auto")
    en.add_argument("--min-seconds", type=float, default=0.0, help="refuse shorter audio")
    en.add_argument("--max-seconds", type=float, default=60.0, help="refuse longer audio")
    for add in (add_train, add_evaluate, add_export):
        add(sub)
    return ap


def _extract(a) -> int:
    from codec_bridge.extraction import extract

    extract(
        a.input,
        a.out,
        format=a.format,
        model=a.model,
        bandwidth=a.bandwidth,
        weights=a.weights,
        device=a.device,
        batch_seconds=a.batch_seconds,
        num_shards=a.num_shards,
        shard_index=a.shard_index,
        limit=a.limit,
        max_seconds=a.max_seconds,
        workers=a.workers,
        threads=a.threads,
        seed=a.seed,
        part_utterances=a.part_utterances,
        part_seconds=a.part_seconds,
        progress=not a.quiet,
    )
    return 0


def _join(a) -> int:
    from codec_bridge.joining import join

    counts = join(a.sources, a.out, a.format)
    each = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"codec_bridge join: {a.out}: {sum(counts.values())} utterances ({each})")
    return 0


def _info(a) -> int:
    from codec_bridge.info import format_info, info

    d = info(a.store, val_fraction=a.val_fraction)
    print(json.dumps(d, indent=2) if a.json else format_info(d))
    return 0


def _verify(a) -> int:
    from codec_bridge.info import verify

    problems = verify(a.store)
    for p in problems:
        print(p)
    if not problems:
        print("ok")
    return 1 if problems else 0


def _decode(a) -> int:
    from codec_bridge.decoding import decode_dir, decode_to_wav

    if a.wait and sys.stdin.readline().strip() != "go":
        raise BridgeError("decode --wait: stdin closed before 'go'")
    sources = [x for x in (a.codes, a.utt_id, a.in_dir) if x is not None]
    if len(sources) != 1:
        raise BridgeError("decode takes exactly one of CODES.npy, --store with --id, or --in-dir")
    if a.in_dir is not None:
        if a.out_dir is None:
            raise BridgeError("--in-dir needs --out-dir")
        paths = decode_dir(a.in_dir, a.out_dir, store=a.store, weights=a.weights, device=a.device)
    else:
        if a.out is None:
            raise BridgeError("decode needs --out OUT.wav")
        paths = [
            decode_to_wav(
                a.out,
                store=a.store,
                utt_id=a.utt_id,
                codes=a.codes,
                meta=a.meta,
                weights=a.weights,
                device=a.device,
            )
        ]
    for p in paths:
        print(p)
    return 0


def _encode(a) -> int:
    from codec_bridge.encoding import encode_file
    from codec_bridge.format import save_codes

    codes, meta = encode_file(
        a.audio,
        a.meta,
        store=a.store,
        weights=a.weights,
        device=a.device,
        min_seconds=a.min_seconds,
        max_seconds=a.max_seconds,
    )
    save_codes(a.out, codes, meta)
    print(a.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {
        "extract": _extract,
        "join": _join,
        "info": _info,
        "verify": _verify,
        "decode": _decode,
        "encode": _encode,
        "train": run_train,
        "evaluate": run_evaluate,
        "export": run_export,
    }
    try:
        return command[args.command](args)
    except BridgeError as e:
        print(f"codec_bridge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an unreadable or vanished input file: one line too
        where = f"{e.filename}: " if e.filename else ""
        print(f"codec_bridge {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "codec_bridge: interrupted; finished parts are committed, re-run to resume",
            file=sys.stderr,
        )
        return 130
