"""How close generated codes are to a reference recording's codes, after time alignment.

eSpeak NG is deterministic, so an unseen demo sentence has a known ground truth: its codes as
the codec encodes eSpeak's recording. Generated speech never has the same timing, so the two
codebook-0 sequences are aligned by dynamic time warping (cost 1 where the codes differ, 0
where they agree; `dtw-python`) and the match rate is the share of aligned pairs whose codes
agree. The figure means something only beside the same figure for another sentence's
recording (`match_table`): a model that reads is far closer to its own sentence.
"""

from __future__ import annotations

import numpy as np
from dtw import dtw


def match_rate(codes_T: np.ndarray, reference_T: np.ndarray) -> float:
    """Share of the DTW path's pairs (generated frame, reference frame) whose codes agree."""
    a_T, b_T = np.asarray(codes_T).ravel(), np.asarray(reference_T).ravel()
    if a_T.size == 0 or b_T.size == 0:
        raise ValueError(f"match_rate needs two non-empty sequences, got {a_T.size} and {b_T.size}")
    cost_TxU = (a_T[:, None] != b_T[None, :]).astype(np.float64)
    path = dtw(cost_TxU)
    return float(np.mean(a_T[path.index1] == b_T[path.index2]))


def match_table(generated: list[np.ndarray], references: list[np.ndarray]) -> dict:
    """Codebook-0 match of each generated `codes_KxT` with its own sentence's reference
    `codes_KxT`, and with the next sentence's (a deterministic mismatched pairing)."""
    n = len(generated)
    if n < 2 or len(references) != n:
        raise ValueError(f"match_table needs >= 2 pairs, got {n} and {len(references)}")
    own = [match_rate(g[0], r[0]) for g, r in zip(generated, references, strict=True)]
    other = [match_rate(g[0], references[(i + 1) % n][0]) for i, g in enumerate(generated)]
    return {
        "utterances": n,
        "own": float(np.mean(own)),
        "mismatched": float(np.mean(other)),
        "closer_to_own": float(np.mean(np.array(own) > np.array(other))),
        "rows": [{"own": o, "mismatched": m} for o, m in zip(own, other, strict=True)],
    }
