"""Evaluation: the eval step's sums reduced to the logged metrics, against values worked out
by hand (the run itself is covered end to end by test_trainer)."""

from pathlib import Path

import numpy as np
import pytest

from jtts.config import load_config
from jtts.evaluation import eval_metrics

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SPEAKER = "model.conditions=[{name: speaker, drop_prob: 0.5, values: [alice, bob]}]"


def sums(**extra):
    """Two codebooks, one layer of two heads; head 1 is more focused but covers half as much."""
    attention = {
        "focus": np.array([[2.0, 3.0]]),
        "steps": np.array([[4.0, 4.0]]),
        "monotone": np.array([[1.0, 2.0]]),
        "pairs": np.array([[2.0, 2.0]]),
        "coverage": np.array([[1.0, 1.0]]),
        "rows": np.array([[1.0, 2.0]]),
    }
    return {
        "ce": np.array([4.0, 3.0]),
        "count": np.array([2.0, 3.0]),
        "correct": np.array([1.0, 3.0]),
        "ce_mismatched": np.array([6.0, 6.0]),
        "ce_null": np.array([8.0, 3.0]),
        "ce_mismatched_speaker": np.array([5.0, 3.0]),
        "attention": attention,
        **extra,
    }


def test_eval_metrics_weight_codebooks_and_measure_each_condition_s_gain():
    model = load_config(CONFIGS / "tiny.yaml", [SPEAKER]).model
    weights_K, unigram_K = np.array([2.0, 1.0]), np.array([3.0, 6.0])
    values = eval_metrics(sums(), weights_K, unigram_K, model, elapsed_s=7.0)
    assert values == pytest.approx(
        {
            "eval/loss": 11 / 7,  # (2*4 + 3) / (2*2 + 3)
            "eval/acc": 4 / 5,
            "eval/loss_cb0": 2.0,
            "eval/loss_cb1": 1.0,
            "eval/acc_cb0": 0.5,
            "eval/acc_cb1": 1.0,
            "eval/unigram": 4.0,  # (2*3 + 6) / 3
            "eval/unigram_cb0": 3.0,
            "eval/unigram_cb1": 6.0,
            "eval/text_gain": 1.0,
            "eval/text_gain_cb0": 1.0,
            "eval/text_gain_cb1": 1.0,
            "eval/null_gain": 1.0,  # mean of 4/2 and 0/3
            "eval/speaker_gain": 0.25,  # mean of 1/2 and 0/3
            "eval/attn_focus": 0.5,
            "eval/attn_monotonicity": 0.5,
            "eval/attn_coverage": 1.0,
            "eval/attn_layer": 0,
            "eval/attn_head": 0,
            "eval/elapsed_s": 7.0,
        }
    )
    with_length = sums(length_rows=np.float32(4), length_abs_rel=np.float32(1))
    values = eval_metrics(with_length, weights_K, unigram_K, model, elapsed_s=7.0)
    assert values["eval/length_error"] == 0.25
    with_pron = sums(pron=np.float32(6), pron_labels=np.float32(4))
    values = eval_metrics(with_pron, weights_K, unigram_K, model, elapsed_s=7.0)
    assert values["eval/pron_loss"] == 1.5 and "eval/length_error" not in values
    no_phonemes = sums(pron=np.float32(0), pron_labels=np.float32(0))
    values = eval_metrics(no_phonemes, weights_K, unigram_K, model, elapsed_s=7.0)
    assert "eval/pron_loss" not in values  # a loss over no phonemes is not 0
    no_rows = sums(length_rows=np.float32(0), length_abs_rel=np.float32(0))
    values = eval_metrics(no_rows, weights_K, unigram_K, model, elapsed_s=7.0)
    assert "eval/length_error" not in values  # an error over no rows is not 0
