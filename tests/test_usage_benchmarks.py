"""The issue-11 study scripts' own logic: every arm is a valid training config, and the frame counts are right.

The scripts train and encode real speech (minutes each), so only their pure parts run here: the arms'
overrides go through the trainer's config loader, and the curve of codes used against frames counted is
checked against counts done by hand.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import codebook_usage  # noqa: E402
import usage_frames  # noqa: E402

from simvq_audio.quantization.tracker import uniform_ceiling  # noqa: E402
from simvq_audio.training.config import load_config  # noqa: E402


def arm_config(arm: str):
    """The trainer's config of one study arm: the study's base overrides, then the arm's."""
    return load_config(codebook_usage.CONFIG, [*codebook_usage.BASE, *codebook_usage.ARMS[arm]])


@pytest.fixture(scope="module")
def base():
    return load_config(codebook_usage.CONFIG, codebook_usage.BASE)


@pytest.mark.parametrize("arm", sorted(codebook_usage.ARMS))
def test_every_arm_is_a_valid_config_that_changes_what_it_names(arm, base):
    cfg = arm_config(arm)
    if arm == "base":
        assert cfg == base
    else:
        assert cfg != base, f"arm {arm} changes nothing"


def test_crop_and_level_arms_set_the_crops_and_levels_they_name(base):
    crop2 = arm_config("crop2")
    natural = arm_config("natural")
    assert crop2.data.segment_seconds == 2.0
    assert crop2.data.batch_size * crop2.data.segment_seconds == base.data.batch_size * base.data.segment_seconds
    assert base.data.loudness_db is not None and natural.data.loudness_db is None
    b8 = arm_config("match10-crop2-b8")
    assert b8.data.batch_size == base.data.batch_size  # as many crops a step as the base ...
    assert b8.data.segment_seconds == 4 * base.data.segment_seconds  # ... each 4x as long
    assert b8.loss.match == 10.0


def test_used_curve_counts_codes_first_seen_before_each_n():
    k = 8
    codes = np.array([3, 3, 5, 0, 3, 5, 7, 1])
    curve = usage_frames.used_curve(codes, k, [1, 2, 3, 4, 7, 8])
    expected = [1, 1, 2, 3, 4, 5]  # distinct codes among the first n frames, counted by hand
    assert [round(u * k) for _, u, _ in curve] == expected
    assert [n for n, _, _ in curve] == [1, 2, 3, 4, 7, 8]
    assert all(c == pytest.approx(uniform_ceiling(n, k)) for n, _, c in curve)


def test_used_curve_of_a_uniform_stream_follows_the_ceiling():
    k = 512
    codes = np.random.default_rng(0).integers(0, k, size=20 * k)
    for n, used, ceiling in usage_frames.used_curve(codes, k, [k // 4, k, 3 * k, 10 * k]):
        assert used == pytest.approx(ceiling, abs=0.05), n


def test_spread_counts_unused_rare_and_the_top_codes_share():
    k = 200
    counts = np.zeros(k, dtype=int)
    counts[0] = 50   # the top 1% (2 codes) take 50 + 20 of the 100 frames
    counts[1] = 20
    counts[2:12] = 2  # 10 codes used twice
    counts[12:22] = 1  # 10 codes used once
    codes = np.repeat(np.arange(k), counts)
    s = usage_frames.spread(codes, k)
    assert s["unused"] == k - 22
    assert s["rare"] == 20
    assert s["top1"] == pytest.approx(0.70)
    assert s["top10"] == pytest.approx(0.98)  # the top 20 codes: every frame but those of codes 20 and 21
    assert 1.0 < s["perplexity"] < 22


def test_snapshots_keep_every_checkpoint_along_the_run(base):
    steps, every = 2000, 500
    cfg = load_config(codebook_usage.CONFIG, [*codebook_usage.BASE, *codebook_usage.snapshot_overrides(steps, every)])
    assert cfg.checkpoint.every == every
    assert cfg.checkpoint.keep_last >= steps // every  # steps 500, 1000, 1500 and 2000 all kept
    assert codebook_usage.snapshot_overrides(steps, None) == []
    assert base.checkpoint.every > 10**8  # without the option the study writes no checkpoints
    with pytest.raises(ValueError, match="snapshot-every"):
        codebook_usage.snapshot_overrides(steps, 0)
    assert cfg.checkpoint.resume == "none"  # a study run starts afresh unless extended
    extended = load_config(codebook_usage.CONFIG, [*codebook_usage.BASE,
                                                   *codebook_usage.snapshot_overrides(4000, every, extend=True)])
    assert extended.checkpoint.resume == "auto" and extended.checkpoint.keep_last >= 4000 // every
    with pytest.raises(ValueError, match="--extend needs"):
        codebook_usage.snapshot_overrides(steps, None, extend=True)
