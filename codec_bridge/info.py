"""What a store holds (``info``) and whether it is intact (``verify``).

Both read the store through `format.CodeStore` only; neither imports torch, so they run
anywhere the store is.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from codec_bridge.errors import BridgeError
from codec_bridge.format import CodeStore, StoreError, split_of

_CHUNK_FRAMES = 1 << 20


def _open(store: str | Path) -> CodeStore:
    try:
        return CodeStore.open(store)
    except StoreError as e:
        raise BridgeError(str(e)) from None


def _code_usage(cs: CodeStore) -> list[int]:
    """Per codebook, how many distinct codes occur anywhere in the store."""
    k, size = int(cs.meta["n_codebooks"]), int(cs.meta["codebook_size"])
    seen = np.zeros((k, size), bool)
    for shard in cs.shards:
        codes = shard.codes
        for start in range(0, codes.shape[0], _CHUNK_FRAMES):
            block = np.asarray(codes[start : start + _CHUNK_FRAMES])
            for q in range(k):
                seen[q, np.unique(block[:, q])] = True
    return seen.sum(1).tolist()


def info(store: str | Path, *, val_fraction: float = 0.05) -> dict[str, Any]:
    """Counts, codec and weights, speakers, splits, skips and code usage of a store."""
    cs = _open(store)
    meta = cs.meta
    speakers = Counter(r.get("speaker") for r in cs.records())
    splits = Counter(split_of(u, val_fraction) for u in cs.ids)
    skipped = cs.skipped()
    return {
        "store": str(cs.root),
        "codec": meta["codec"],
        "sample_rate": meta["sample_rate"],
        "frame_rate": meta["frame_rate"],
        "bandwidth": meta["bandwidth"],
        "n_codebooks": meta["n_codebooks"],
        "codebook_size": meta["codebook_size"],
        "weights": meta["weights"],
        "shards": len(cs.shards),
        "utterances": len(cs),
        "hours": float(cs.durations.sum()) / 3600,
        "frames": int(cs.lengths.sum()),
        "speakers": len(speakers),
        "top_speakers": dict(speakers.most_common(10)),
        "val_fraction": val_fraction,
        "splits": {"train": splits.get("train", 0), "val": splits.get("val", 0)},
        "skipped": len(skipped),
        "skipped_reasons": dict(Counter(s.get("reason", "").split(" (")[0] for s in skipped)),
        "codes_used": _code_usage(cs),
    }


def format_info(d: dict[str, Any]) -> str:
    """``info`` as a few aligned human-readable lines."""
    w, splits = d["weights"], d["splits"]
    weights = ", ".join(f"{k}={str(v)[:16]}" for k, v in w.items() if k != "kind")
    rows = [
        ("store", d["store"]),
        (
            "codec",
            f"{d['codec']} @ {d['bandwidth']:g} kbps, {d['n_codebooks']} codebooks x"
            f" {d['codebook_size']} codes, {d['frame_rate']:g} frames/s",
        ),
        ("weights", f"{w.get('kind')} ({weights})"),
        ("utterances", f"{d['utterances']} in {d['shards']} shard parts"),
        ("audio", f"{d['hours']:.3f} h, {d['frames']} frames"),
        (
            "speakers",
            f"{d['speakers']}: " + ", ".join(f"{k} ({v})" for k, v in d["top_speakers"].items()),
        ),
        (
            "splits",
            f"train {splits['train']}, val {splits['val']} (val fraction {d['val_fraction']:g})",
        ),
        (
            "skipped",
            f"{d['skipped']}" + "".join(f"; {r}: {n}" for r, n in d["skipped_reasons"].items()),
        ),
        ("codes used", " ".join(f"{n}/{d['codebook_size']}" for n in d["codes_used"])),
    ]
    return "\n".join(f"{k:>11}: {v}" for k, v in rows)


def verify(store: str | Path) -> list[str]:
    """`CodeStore.verify` plus the untrained weights file the store's decoding depends on."""
    try:
        cs = CodeStore.open(store)
        problems = cs.verify()
    except StoreError as e:
        return [str(e)]
    w = cs.meta["weights"]
    if w.get("kind") == "untrained":
        path = cs.root / w.get("file", "")
        if not path.is_file():
            problems.append(
                f"{path}: untrained codec weights are missing (codes cannot be decoded)"
            )
        elif w.get("sha256") and hashlib.sha256(path.read_bytes()).hexdigest() != w["sha256"]:
            problems.append(f"{path}: sha256 differs from meta.json (weights were replaced)")
    return problems
