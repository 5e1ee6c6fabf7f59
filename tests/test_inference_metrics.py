"""Offset estimation and metrics on hand-worked examples."""

import math

import numpy as np
import pytest

from sesyn_jax.offset_search import estimate_offset, estimate_offsets, frame_matches
from sesyn_jax.metrics import format_table, format_table_row, sync_metrics


def one_hot_frames(ids, dim=64):
    """Embeddings whose nearest neighbours are fully determined by integer ids."""
    return np.eye(dim, dtype=np.float32)[np.asarray(ids)] * 10.0


def test_shifted_sequence_gives_its_shift():
    # v shows what u shows 4 frames earlier: u frame m matches v frame m + 4... for u = v[4:]
    seq = np.arange(40)
    f_v = one_hot_frames(seq)
    f_u = one_hot_frames(seq[4:34])
    assert estimate_offset(f_u, f_v) == 4
    assert estimate_offset(f_v[:30], f_u) == -4  # negative offsets


def test_even_count_median_is_mean_of_middle_then_floor():
    # matches o = [0, 2, 5, 9] for m = 0..3 -> o - m = [0, 1, 3, 6]; median = (1+3)/2 = 2
    f_v = one_hot_frames(np.arange(12))
    f_u = one_hot_frames([0, 2, 5, 9])
    np.testing.assert_array_equal(frame_matches(f_u, f_v), [0, 2, 5, 9])
    assert estimate_offset(f_u, f_v) == 2
    # o - m = [0, 1, 2, 6] -> median 1.5 -> floor 1; o - m = [-3, -2, 0, 1] -> -1 -> floor -1
    assert estimate_offset(one_hot_frames([0, 2, 4, 9]), f_v) == 1
    f_v2 = one_hot_frames(np.arange(12))
    f_u2 = one_hot_frames([0, 0, 2, 4])  # o - m = [0, -1, 0, 1] -> median 0
    assert estimate_offset(f_u2, f_v2) == 0
    # o - m = [0, -1, -2, 0] sorted [-2, -1, 0, 0] -> median -0.5 -> floor -1
    assert estimate_offset(one_hot_frames([0, 0, 0, 3]), f_v2) == -1
    assert math.floor(np.median([0, -1, -2, 0])) == -1


def test_masks_and_batch_agree_with_single_pair():
    rng = np.random.default_rng(0)
    pairs = []
    for m, n, shift in [(20, 30, 5), (25, 18, -3), (12, 12, 0)]:
        ids = rng.permutation(64)
        v = ids[:n]
        u = (
            ids[max(shift, 0) : max(shift, 0) + m]
            if shift >= 0
            else np.concatenate([ids[40 : 40 - shift], ids[: m + shift]])
        )
        pairs.append((one_hot_frames(u), one_hot_frames(v)))
    fu = np.zeros((3, 32, 64), np.float32)
    fv = np.full((3, 32, 64), 99.0, np.float32)  # padded frames would win every match if seen
    mu = np.zeros((3, 32), bool)
    mv = np.zeros((3, 32), bool)
    for i, (a, b) in enumerate(pairs):
        fu[i, : len(a)] = a
        fv[i, : len(b)] = b
        mu[i, : len(a)] = True
        mv[i, : len(b)] = True
    got = estimate_offsets(fu, fv, mu, mv)
    want = [estimate_offset(a, b) for a, b in pairs]
    np.testing.assert_array_equal(got, want)
    assert want[0] == 5 and want[2] == 0


def test_metrics_hand_worked():
    pred = [3, -7, 0, 12, 5]
    true = [2, -10, 0, 1, 5]
    # e = [1, 3, 0, 11, 0]
    m = sync_metrics(pred, true, fps=30.0)
    assert m["frame_error"] == pytest.approx(15 / 5)
    assert m["acc@1"] == pytest.approx(3 / 5)  # e <= 1: 1, 0, 0
    assert m["acc@5"] == pytest.approx(4 / 5)
    assert m["acc@10"] == pytest.approx(4 / 5)
    assert m["abs_error"] == pytest.approx(3 / 30)
    assert m["rel_error"] == pytest.approx(15 / 18)
    # non-zero true: 2, -10, 1, 5 -> rates 0.5, 0.3, 11, 0 (the zero-true pair is left out)
    assert m["racc@10"] == pytest.approx(1 / 4)
    assert m["racc@30"] == pytest.approx(2 / 4)
    assert m["racc@50"] == pytest.approx(3 / 4)


def test_metrics_edge_cases_and_table():
    m = sync_metrics([0, 1], [0, 0])
    assert math.isnan(m["racc@10"]) and math.isnan(m["rel_error"])
    with pytest.raises(ValueError, match="no pairs"):
        sync_metrics([], [])
    with pytest.raises(ValueError, match="pred has 2"):
        sync_metrics([1, 2], [1])
    row = format_table_row(sync_metrics([3, -7, 0, 12, 5], [2, -10, 0, 1, 5]), "SeSyn")
    assert row == "| SeSyn | 3.00 | 60.00 | 80.00 | 80.00 | 0.1000 | 0.83 | 25.00 | 50.00 | 75.00 |"
    assert format_table({"x": sync_metrics([1], [1])}).startswith("| Method | Frm.err")


def test_accuracy_counts_errors_equal_to_k():
    # errors exactly 1, 5, 10 and 11 frames
    m = sync_metrics([1, 5, 10, 11], [0, 0, 0, 0])
    assert (m["acc@1"], m["acc@5"], m["acc@10"]) == (0.25, 0.5, 0.75)
    m = sync_metrics([-10, 15, 13], [-20, 10, 10])  # e = 10, 5, 3; e / |true| = .5, .5, .3
    assert m["racc@50"] == 1.0 and m["racc@30"] == pytest.approx(1 / 3)
