"""Clock drift (``sesyn_jax.sync.drift``): the robust line fit against known lines and numpy's least
squares, window offsets on synthetic embeddings with a known offset and rate, the rule for
short recordings, the several-view rate fit against the clock equations, the output, and one
rendered pair through the shipped model."""

import json
import math

import numpy as np
import pytest

from sesyn_jax.sync import drift
from sesyn_jax.sync import CannotSync, fit_offsets

RATE = 30.0


# ----------------------------------------------------------------------------- line fit


def _line(n=60, slope=-1e-3, icpt=37.4, noise=0.0, outliers=(), seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(300.0, 17700.0, n)
    y = icpt + slope * x + rng.normal(0.0, noise, n) if noise else icpt + slope * x
    y = np.array(y, np.float64)
    for k, jump in outliers:
        y[k] += jump
    return x, y


def test_fit_line_is_exact_on_a_clean_line_with_outliers():
    bad = [(3, 12.0), (10, -7.5), (11, 30.0), (40, 5.0), (41, -3.0), (59, 9.0)]
    x, y = _line(outliers=bad)
    fit = drift.fit_line(x, y, np.ones_like(x))
    assert fit.slope == pytest.approx(-1e-3, abs=1e-12)
    assert fit.intercept == pytest.approx(37.4, abs=1e-9)
    out = [k for k, _ in bad]
    assert (fit.weights[out] == 0).all() and (
        fit.weights[np.setdiff1d(np.arange(60), out)] > 0
    ).all()
    # Theil-Sen alone (the start) is robust to these 10 % as well
    s, i = drift.theil_sen(x, y)
    assert s == pytest.approx(-1e-3, abs=1e-12) and i == pytest.approx(37.4, abs=1e-9)
    # beyond 400 points each point is paired with the one half the points further on
    x, y = _line(n=1001, outliers=[(k, 8.0) for k in range(0, 1001, 5)])
    s, i = drift.theil_sen(x, y)
    assert s == pytest.approx(-1e-3, abs=1e-12) and i == pytest.approx(37.4, abs=1e-9)
    fit = drift.fit_line(x, y, np.ones_like(x))
    assert fit.slope == pytest.approx(-1e-3, abs=1e-12) and (fit.weights[::5] == 0).all()


def test_fit_line_without_outliers_is_numpys_weighted_least_squares():
    x, y = _line(noise=0.3, seed=1)
    w = np.random.default_rng(2).uniform(0.2, 1.0, len(x))
    # a bound far beyond every residual: every biweight is 1, the fit is plain weighted LS
    fit = drift.fit_line(x, y, w, tukey=1e9)
    slope, icpt = np.polyfit(x, y, 1, w=np.sqrt(w))  # polyfit weighs the residuals
    assert fit.slope == pytest.approx(slope, rel=1e-9)
    assert fit.intercept == pytest.approx(icpt, rel=1e-9)
    # standard errors of weighted LS, from the textbook formulas in float64
    r = y - (icpt + slope * x)
    sigma2 = np.sum(w * r**2) / (len(x) - 2)
    xm = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    assert fit.slope_stderr == pytest.approx(math.sqrt(sigma2 / sxx), rel=1e-6)
    assert fit.intercept_stderr == pytest.approx(
        math.sqrt(sigma2 * (1 / np.sum(w) + xm**2 / sxx)), rel=1e-6
    )


def test_fit_line_with_noise_and_outliers_stays_within_its_error():
    bad = [(k, 15.0 * (-1) ** k) for k in range(0, 60, 7)]  # 9 of 60 windows far off
    x, y = _line(noise=0.3, outliers=bad, seed=3)
    fit = drift.fit_line(x, y, np.ones_like(x))
    clean = np.setdiff1d(np.arange(60), [k for k, _ in bad])
    ref_slope, ref_icpt = np.polyfit(x[clean], y[clean], 1)
    assert (fit.weights[[k for k, _ in bad]] == 0).all()
    # the biweight also lowers good windows a little (0.91 at one scale): within one error
    assert abs(fit.slope - ref_slope) < fit.slope_stderr
    assert abs(fit.intercept - ref_icpt) < fit.intercept_stderr
    assert abs(fit.slope + 1e-3) < 4 * fit.slope_stderr < 4e-5
    assert abs(fit.intercept - 37.4) < 4 * fit.intercept_stderr


# ----------------------------------------------------------------------------- windows


def _signal(t, channels=12, seed=0, cycles=(0.01, 0.12)):
    """A smooth, non-repeating (T, channels) signal at fractional frame times t; ``cycles``
    the range of its frequencies, in cycles per frame."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(*cycles, (channels, 24))
    phase = rng.uniform(0, 2 * np.pi, (channels, 24))
    amp = rng.uniform(0.5, 1.5, (channels, 24))
    arg = 2 * np.pi * freq[None] * np.asarray(t, np.float64)[:, None, None] + phase[None]
    return (amp[None] * np.sin(arg)).sum(-1).astype(np.float32)


def _drifting_pair(frames_a, frames_b, offset, ppm):
    """Embeddings of A and B with frame m of A at frame (1 + r) m + offset of B."""
    r = ppm * 1e-6
    f_a = _signal(np.arange(frames_a))
    f_b = _signal((np.arange(frames_b) - offset) / (1 + r))
    return f_a, f_b


def test_window_offsets_follow_a_known_offset_and_rate():
    offset, ppm = 37.4, -1000.0
    f_a, f_b = _drifting_pair(3600, 3700, offset, ppm)  # 2 minutes
    starts = drift.window_starts(0, 3600, 600, 300)
    assert list(starts) == list(range(0, 3001, 300))
    coarse = offset + ppm * 1e-6 * 1800 + 1.6  # the middle's offset, off by 1.6 frames
    w = drift.window_offsets(f_a, f_b, coarse, starts, 600, 20)
    truth = offset + ppm * 1e-6 * w.centres
    np.testing.assert_allclose(w.centres, starts + 299.5)
    assert np.abs(w.offsets - truth).max() < 0.1
    assert (w.confidence > 0.9).all()
    # each frame's own best match in the band, by brute force in float64
    lags = np.arange(round(coarse) - 20, round(coarse) + 21)
    for m in (0, 700, 1801, 3599):
        d = [np.sum((f_a[m].astype(np.float64) - f_b[m + k]) ** 2) for k in lags]
        assert w.frame_lags[m] == lags[int(np.argmin(d))]
    fit = drift.estimate_drift(f_a, f_b, coarse, RATE)
    assert abs(fit.drift_ppm - ppm) < 20
    assert fit.agreement > 0.95
    assert abs(fit.offset - offset) < 0.1
    assert fit.confidence > 0.9
    assert fit.offset_at(100.0) == pytest.approx((offset / RATE) * 1 + ppm * 1e-4, abs=0.005)


def test_each_window_is_the_diagonal_search_on_its_frames():
    """A window's offset equals offset_search.search_offset (diagonal, sub-frame) on the window's
    frames of A against B within the band: A's frames outside the window masked off, B cut
    so that the band becomes [-band, band]."""
    from sesyn_jax.offset_search import search_offset

    f_a, f_b = _drifting_pair(3000, 3100, 23.3, 1500.0)
    mask_b = np.ones(len(f_b), bool)
    mask_b[1000:1040] = False
    c, band, window = 26, 15, 450
    starts = np.array([0, 700, 1300, 2500])
    w = drift.window_offsets(f_a, f_b, c + 0.2, starts, window, band, mask_b=mask_b)
    for s, got in zip(starts, w.offsets):
        lo = s - band
        u = np.zeros((window + 2 * band, f_a.shape[1]), np.float32)
        mu = np.zeros(window + 2 * band, bool)
        u[band : band + window] = f_a[s : s + window]
        mu[band : band + window] = True
        b_lo, b_hi = lo + c, lo + c + window + 2 * band
        assert 0 <= b_lo and b_hi <= len(f_b)
        v, mv = f_b[b_lo:b_hi], mask_b[b_lo:b_hi]
        found = search_offset(u, v, mu, mv, rule="diagonal", max_offset=band, subframe=True)
        assert got == pytest.approx(c + found.offset, abs=1e-6)


def test_windows_of_other_motion_are_dropped():
    offset, ppm = -20.0, 800.0
    f_a, f_b = _drifting_pair(4500, 4500, offset, ppm)  # 2.5 minutes
    other = _signal(np.arange(4500), seed=5)
    cut = np.r_[600:1200, 2700:3300]  # B shows something else for 40 s
    f_b[cut] = other[cut]
    fit = drift.estimate_drift(f_a, f_b, offset + ppm * 1e-6 * 2250, RATE)
    assert abs(fit.drift_ppm - ppm) < 20 and abs(fit.offset - offset) < 0.1
    # windows of A whose frames lie almost all in B's other motion (centred in B at 900, 3000)
    centres_in_b = fit.windows.centres + offset + ppm * 1e-6 * fit.windows.centres
    hit = (np.abs(centres_in_b - 900) < 60) | (np.abs(centres_in_b - 3000) < 60)
    assert hit.sum() == 2 and (fit.windows.confidence[hit] < 0.3).all()
    assert 0.6 < fit.confidence < 0.9  # the windows that overlap the other motion do not count
    clean = drift.estimate_drift(*_drifting_pair(4500, 4500, offset, ppm), fit.offset, RATE)
    assert clean.confidence > fit.confidence and clean.agreement > fit.agreement


def test_a_window_whose_offset_lies_beyond_the_band_is_not_trusted():
    # slow motion: the scores rise towards the truth (40) across the whole band 20 +- 10
    slow = (0.001, 0.004)
    f_a = _signal(np.arange(1200), cycles=slow)
    f_b = _signal(np.arange(1300) - 40.0, cycles=slow)
    w = drift.window_offsets(f_a, f_b, 20.0, np.array([0, 600]), 600, 10)
    np.testing.assert_allclose(w.offsets, 30.0)
    assert (w.confidence == 0).all()
    f_a, f_b = _drifting_pair(1200, 1300, 40.0, 0.0)
    w = drift.window_offsets(f_a, f_b, 37.0, np.array([0, 600]), 600, 10)
    np.testing.assert_allclose(w.offsets, 40.0, atol=0.05)
    assert (w.confidence > 0.9).all()


def test_masked_frames_do_not_count():
    f_a, f_b = _drifting_pair(1200, 1300, 12.0, 0.0)
    f_a[100:400] = 50.0  # garbage where A's mask is False
    mask_a = np.ones(1200, bool)
    mask_a[100:400] = False
    w = drift.window_offsets(f_a, f_b, 12.0, np.array([0]), 600, 8, mask_a=mask_a)
    assert w.offsets[0] == pytest.approx(12.0, abs=0.05)
    real = np.r_[0:100, 400:600]
    assert w.centres[0] == pytest.approx(real.mean())


# ----------------------------------------------------------------------------- the rules


def test_short_overlap_and_no_drift_give_one_offset():
    f_a, f_b = _drifting_pair(2000, 1800, -500.0, -1000.0)  # A's frames 500 .. 1999: 50 s
    fit = drift.estimate_drift(f_a, f_b, -500.4, RATE)
    assert fit.drift_ppm is None and fit.offset == -500.4 and fit.windows is None
    assert "50.0 s" in fit.note and "60 s" in fit.note
    f_a, f_b = _drifting_pair(2400, 2400, 5.0, -1000.0)  # 80 s
    fit = drift.estimate_drift(f_a, f_b, 4.0, RATE, no_drift=True)
    assert fit.drift_ppm is None and fit.offset == 4.0 and "forced" in fit.note
    assert drift.estimate_drift(f_a, f_b, 4.0, RATE).drift_ppm is not None
    fields = drift.drift_fields(fit)
    assert fields == {
        "offset_seconds": round(4.0 / RATE, 4),
        "drift_ppm": None,
        "drift_note": fit.note,
    }
    assert drift.describe_drift(fit, "a", "b") == "drift not estimated: one offset forced"
    # hours of recording: the band of offsets would not fit in the memory given
    fit = drift.estimate_drift(f_a, f_b, 4.0, RATE, max_bytes=4e5)
    need = drift.band_bytes(2400, drift.search_band(2396, RATE))  # A's frames 0 .. 2395 in B
    assert need == 2400 * (2 * (5 + 15) + 1) * 5 > 4e5
    assert fit.drift_ppm is None and fit.offset == 4.0 and f"{need / 1e9:.1f} GB" in fit.note


def test_unrelated_recordings_give_no_confident_drift():
    f_a = _signal(np.arange(3000), seed=1)
    f_b = _signal(np.arange(3000), seed=2)
    fit = drift.estimate_drift(f_a, f_b, 0.0, RATE)
    assert fit.drift_ppm is None or fit.confidence < 0.2


def test_band_and_overlap():
    assert drift.overlap_frames(1000, 900, 50.4) == (0, 850)
    assert drift.overlap_frames(1000, 900, -120.0) == (120, 1000)
    # 10 minutes at 2000 ppm: 36 frames, plus half a second
    assert drift.search_band(18000, 30.0) == 36 + 15
    # a quarter frame of bias, independent between 30 s stretches (at least two)
    assert drift.systematic_slope_error(900.0, 30.0) == pytest.approx(0.25 * 6**0.5 / 900)
    assert drift.systematic_slope_error(9000.0, 30.0) == pytest.approx(0.25 * 1.2**0.5 / 9000)


def test_the_pair_answer_becomes_the_line_only_when_the_windows_follow_it():
    from sesyn_jax.sync.search import PairResult, Search

    def pair(learned, speed, method):
        empty = np.zeros(0)
        searches = {
            "learned": Search("learned", learned, 0.15, empty, empty),
            "speed": Search("speed", speed, 0.6, empty, empty),
        }
        best = searches[method]
        note = f"warning: the best {method} offset (x) is the largest that still aligns ..."
        return PairResult("a", "b", best.offset, best.confidence, method, searches, notes=[note])

    f_a, f_b = _drifting_pair(4500, 4500, 37.4, -1000.0)  # 2.5 minutes
    # 'auto' took the speed answer (its confidence above the learned one's)
    line, fit = drift.pair_drift(pair(36.0, 200.0, "speed"), f_a, f_b, 0, RATE)
    assert abs(fit.drift_ppm + 1000) < 20 and fit.confidence > 0.9
    assert line.method == "learned" and line.offset == fit.offset
    assert line.confidence == fit.agreement > 0.9 and line.notes == []
    # --no-drift: the pair as matched, the fit holds its offset
    same, one = drift.pair_drift(pair(36.0, 200.0, "speed"), f_a, f_b, 0, RATE, no_drift=True)
    assert same.offset == 200.0 and same.method == "speed" and one.offset == 200.0
    assert one.drift_ppm is None and "forced" in one.note
    # unrelated recordings: few windows follow any line, the pair stays as matched
    other = _signal(np.arange(4500), seed=7)
    same, fit = drift.pair_drift(pair(10.0, 200.0, "speed"), f_a, other, 0, RATE)
    assert same.offset == 200.0 and same.method == "speed" and same.confidence == 0.6
    assert fit.drift_ppm is None and fit.offset == 200.0
    assert fit.note.startswith("drift not estimated: only 0% of the windows agree with one line")
    # too short for the learned method: no learned search, no drift
    short = pair(36.0, 200.0, "speed")
    del short.searches["learned"]
    same, fit = drift.pair_drift(short, f_a, f_b, 0, RATE)
    assert same is short and fit.drift_ppm is None and "too short" in fit.note


# ----------------------------------------------------------------------------- several views


def _pair_fit(i, j, rho, delta, off=0.0, ppm_off=0.0):
    """The exact pairwise fit of j against i for clocks t_k = (1 + rho_k) t_0 + delta_k."""
    r = (1 + rho[j]) / (1 + rho[i]) - 1
    d = delta[j] - (1 + r) * delta[i]
    return drift.DriftFit(d + off, RATE, r * 1e6 + ppm_off)


def test_fit_views_recovers_the_clocks():
    rho = np.array([0.0, -1000e-6, 250e-6, 40e-6])
    delta = np.array([0.0, 55.0, -31.5, 400.0])  # frames
    # the pairs' relation checked against the clocks themselves at two moments of recording 0
    for t0 in (0.0, 9000.0):
        t = (1 + rho) * t0 + delta
        f = _pair_fit(1, 2, rho, delta)
        assert t[2] == pytest.approx((1 + f.drift_ppm * 1e-6) * t[1] + f.offset, abs=1e-9)
    pairs = []
    for i in range(4):
        for j in range(i + 1, 4):
            bad = (i, j) == (1, 3)  # one pair wrong by 600 ppm and 9 frames
            pairs.append((i, j, _pair_fit(i, j, rho, delta, 9.0 * bad, 600.0 * bad), 1.0))
    views = drift.fit_views(4, pairs, fit_offsets)
    np.testing.assert_allclose(views.drift_ppm, rho * 1e6, atol=1e-6)
    np.testing.assert_allclose(views.offsets, delta, atol=1e-6)
    wrong = [k for k, (i, j, _, _) in enumerate(pairs) if (i, j) == (1, 3)][0]
    r13 = (1 + rho[3]) / (1 + rho[1]) - 1
    log_ppm = 1e6 * (math.log1p(r13 + 600e-6) - math.log1p(r13))  # about 600
    assert views.rate_residuals[wrong] == pytest.approx(log_ppm, abs=1e-6)
    assert abs(views.offset_residuals[wrong]) > 8
    assert np.abs(np.delete(views.rate_residuals, wrong)).max() < 1e-6


def test_three_recordings_from_their_embeddings():
    """Recording k shows the moment tau (frames of recording 0) at frame
    (1 + rho_k) tau + delta_k: each pair estimated from embeddings, then fitted together."""
    rho = np.array([0.0, -1000e-6, 600e-6])
    delta = np.array([0.0, 31.0, -12.5])
    n = 3000
    feats = [_signal((np.arange(n) - delta[k]) / (1 + rho[k])) for k in range(3)]
    pairs = []
    for i, j in ((0, 1), (0, 2), (1, 2)):
        r = (1 + rho[j]) / (1 + rho[i]) - 1
        d = delta[j] - (1 + r) * delta[i]
        fit = drift.estimate_drift(feats[i], feats[j], d + r * n / 2 + 0.7, RATE)
        assert abs(fit.drift_ppm - r * 1e6) < 20 and abs(fit.offset - d) < 0.15
        pairs.append((i, j, fit, fit.confidence))
    views = drift.fit_views(3, pairs, fit_offsets)
    np.testing.assert_allclose(views.drift_ppm, rho * 1e6, atol=20)
    np.testing.assert_allclose(views.offsets, delta, atol=0.15)


def test_fit_views_without_enough_rates():
    rho = np.array([0.0, -1000e-6, 0.0])
    delta = np.array([0.0, 10.0, -20.0])
    pairs = [
        (0, 1, _pair_fit(0, 1, rho, delta), 1.0),
        (0, 2, drift.DriftFit(-20.0, RATE, None, note="short"), 1.0),
    ]
    views = drift.fit_views(3, pairs, fit_offsets)
    assert views.drift_ppm is None and "connect" in views.note
    np.testing.assert_allclose(views.offsets, [0.0, 10.0, -20.0])
    with pytest.raises(CannotSync):
        drift.fit_views(3, pairs[:1], fit_offsets)
    # the command's output: offsets without rates, and the note why
    from sesyn_jax.sync.output import Report, views_section
    from sesyn_jax.sync.search import PairResult

    results = [PairResult(str(i), str(j), f.offset, w, "learned", {}) for i, j, f, w in pairs]
    pairs[0][2].confidence, pairs[0][2].agreement = 0.9, 1.0
    out = Report({}, [], [])
    names = ["0", "1", "2"]
    views_section(
        out, results, [f for _, _, f, _ in pairs], names, dict.fromkeys(names, RATE), RATE
    )
    assert [v["drift_ppm"] for v in out.fields["views"]] == [None] * 3
    assert views.note in out.lines
    assert [c.drift_measured for c in out.clocks] == [False] * 3


# ----------------------------------------------------------------------------- output


def _fit_with_windows():
    f_a, f_b = _drifting_pair(18000 // 4, 18000 // 4 + 60, 39.0, -1000.0)
    return drift.estimate_drift(f_a, f_b, 38.0, RATE)


def test_text_json_and_plot(tmp_path):
    fit = _fit_with_windows()
    text = drift.describe_drift(fit, "cam1", "cam2")
    span = (fit.span[1] - fit.span[0]) / RATE
    assert text.startswith(f"drift: cam2 runs {abs(fit.drift_ppm):.0f} +- ")
    assert f"ppm slow against cam1: {fit.drift_ppm * 1e-6 * span:+.3f} s over " in text
    assert text.endswith(
        f"{span / 60:.1f} min; {fit.confidence:.0%} of the windows lie on the line"
    )
    fields = drift.drift_fields(fit)
    json.dumps(fields, allow_nan=False)
    assert fields["drift_ppm"] == round(fit.drift_ppm, 1)
    assert fields["offset_seconds"] == round(fit.offset / RATE, 4)
    assert len(fields["drift_windows"]) == len(fit.windows.offsets)
    first = fields["drift_windows"][0]
    assert first["time_a_seconds"] == round(fit.windows.centres[0] / RATE, 3)
    assert first["inlier"] is True
    path = tmp_path / "drift.png"
    drift.plot_drift(fit, str(path), "cam1", "cam2")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fast = drift.DriftFit(0.0, RATE, 250.0, 5.0, 0.3, span=(0.0, 1800.0))
    assert drift.describe_drift(fast, "a", "b") == (
        "drift: b runs 250 +- 5 ppm fast against a: +0.015 s over 60 s; 30% of the windows "
        "lie on the line (low: few windows agree with the line)"
    )


# ----------------------------------------------------------------------------- shipped model


LEAD = 39  # frames of true time at 30 fps by which B starts before A


@pytest.fixture(scope="module")
def ntsc_pair():
    """Three minutes (5400 frames each) rendered from the embedded motion: B records at 29.97
    fps, its file says 30, and it starts 1.3 s before A, so that the moment at time t of A is
    at 0.999 t + 0.999 x 1.3 s of B. Pixel poses a, b (T, 17, 3)."""
    from sesyn_jax.data import cameras, mocap_syn
    from sesyn_jax.data.resample import interpolate

    clips = []
    for c in mocap_syn.load_embedded():
        if len(c.joints) > 300:
            j = c.joints.astype(np.float64)
            j[..., [0, 2]] -= j[:1, 11:13].mean(1)[:, [0, 2]]
            clips.append(j)
    joints = np.concatenate(clips)  # 199 s at 30 fps
    frames = 5400
    rng = np.random.default_rng(0)
    cam1, cam2, _ = cameras.sample_camera_pair(rng, joints)
    a = cameras.detect(rng, cam1, joints[LEAD : LEAD + frames])
    b = cameras.detect(rng, cam2, interpolate(joints, np.arange(frames) * 30 / 29.97))
    return a, b


def test_three_minutes_rendered_through_the_shipped_model(ntsc_pair):
    from sesyn_jax import loading, sync
    from sesyn_jax.data import normalization
    from sesyn_jax.model import inner_mask

    loaded = loading.load_model("default")
    model = loaded.model()
    feats = [
        sync.embed(model, loaded.variables, normalization.normalize(x, loaded.normalization))
        for x in ntsc_pair
    ]
    masks = [np.asarray(inner_mask(np.ones(len(f), bool), loaded.inner_radius)) for f in feats]
    coarse = sync.learned_search(*feats, loaded.inner_radius, max_offset=300)
    fit = drift.estimate_drift(*feats, coarse.offset, loaded.fps, *masks)
    true_offset = 0.999 * LEAD / 30
    assert abs(fit.drift_ppm + 1000) < 2 * fit.drift_ppm_stderr < 300
    assert abs(fit.offset_seconds - true_offset) < 1 / 30
    # the single offset misses A's start by about the drift over half the recording
    assert abs(coarse.offset / 30 - true_offset) > 0.05


def test_the_command_reports_the_drift_and_no_drift_forces_one_offset(ntsc_pair, tmp_path, capsys):
    """sesyn-sync on the three-minute NTSC pair: drift_ppm and offset_seconds (at A's start)
    against the truth, the answer is the learned line with its agreement as the confidence
    (no low-confidence warning), the drift plot is written; --no-drift gives one offset."""
    from sesyn_jax import sync

    files = []
    for name, x in zip("ab", ntsc_pair):
        np.save(tmp_path / f"{name}.npy", x)
        files.append(str(tmp_path / f"{name}.npy"))
    plot = tmp_path / "sync.png"
    assert sync.main(files + ["--fps", "30", "--json", "--plot", str(plot)]) == 0
    r = json.loads(capsys.readouterr().out)
    true_offset, true_ppm = 0.999 * LEAD / 30, (29.97 / 30 - 1) * 1e6
    assert abs(r["drift_ppm"] - true_ppm) < 2 * r["drift_ppm_stderr"] < 300
    assert abs(r["offset_seconds"] - true_offset) < 1 / 30
    assert r["offset_frames_a"] == pytest.approx(r["offset_seconds"] * 30, abs=0.01)
    assert r["method"] == "learned" and r["confidence"] == r["agreement"] >= 0.5
    assert r["drift_confidence"] >= 0.5 and len(r["drift_windows"]) >= 15
    assert not any("low confidence" in n for n in r["notes"])
    assert r["plot_drift"] == str(tmp_path / "sync_drift.png")
    assert (tmp_path / "sync_drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the windows lie along the reported line
    for w in r["drift_windows"]:
        if w["inlier"]:
            line = r["offset_seconds"] + r["drift_ppm"] * 1e-6 * w["time_a_seconds"]
            assert abs(w["offset_seconds"] - line) < 2 / 30

    assert sync.main(files + ["--fps", "30", "--no-drift", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["drift_ppm"] is None and "forced" in one["drift_note"]
    assert "drift_windows" not in one
    chosen = one["searches"][one["method"]]["offset_seconds"]
    assert one["offset_seconds"] == chosen
    # one offset for the whole recording misses A's start by the drift over half of it
    assert abs(one["offset_seconds"] - true_offset) > 0.05


def test_several_views_in_the_output_take_the_rates():
    """The command's views section on exact pair fits of four clocks (one pair wrong, one
    without a rate): each recording's offset and drift against the first, the pairs' drifts,
    and the clocks that --write-synced uses."""
    from sesyn_jax.sync.output import Report, views_section
    from sesyn_jax.sync.search import PairResult

    rho = np.array([0.0, -1000e-6, 250e-6, 40e-6])
    delta = np.array([0.0, 55.0, -31.5, 400.0])
    names = ["c0", "c1", "c2", "c3"]
    results, fits = [], []
    for i in range(4):
        for j in range(i + 1, 4):
            bad = (i, j) == (2, 3)
            f = _pair_fit(i, j, rho, delta, 9.0 * bad, 600.0 * bad)
            f.confidence, f.agreement = 0.95, 0.9
            results.append(PairResult(names[i], names[j], f.offset, 0.9, "learned", {}))
            fits.append(f)
    fits[0] = drift.DriftFit(fits[0].offset, RATE, None, note="drift not estimated: short")
    out = Report({}, [], [])
    views_section(out, results, fits, names, {n: RATE for n in names}, RATE)
    got = out.fields["views"]
    np.testing.assert_allclose([v["drift_ppm"] for v in got], rho * 1e6, atol=0.05)
    np.testing.assert_allclose([v["offset_seconds"] for v in got], delta / RATE, atol=1e-4)
    assert out.fields["pairs"][0]["drift_ppm"] is None
    assert out.fields["pairs"][1]["drift_ppm"] == round(fits[1].drift_ppm, 1)
    assert out.lines[2] == f"  c1: {55 / RATE:+.3f} s (+55.00 frames at 30 fps), runs 1000 ppm slow"
    for c, k in zip(out.clocks, range(4)):
        assert c.offset_seconds == pytest.approx(delta[k] / RATE, abs=1e-9)
        assert c.drift_ppm == pytest.approx(rho[k] * 1e6, abs=1e-6) and c.drift_measured
    # every recording agrees through its other pairs; the wrong pair counts for none
    assert [c.confidence for c in out.clocks] == [0.9] * 4


def test_a_rate_not_told_from_zero_is_not_used():
    """75 s without drift: the learned offsets' motion-dependent error alone is 371 ppm (1
    sigma) over the 55 s the windows span, so whatever rate the line measures is not told from
    0: the pair keeps its single offset, the fit no drift (what --write-synced then uses), and
    the rate is reported as measured. The same length drifting by 1500 ppm is told."""
    from sesyn_jax.sync.search import PairResult, Search

    def pair(offset):
        searches = {"learned": Search("learned", offset, 0.9, np.zeros(0), np.zeros(0))}
        return PairResult("a", "b", offset, 0.9, "learned", searches)

    f_a, f_b = _drifting_pair(2250, 2300, 37.4, 0.0)
    same, fit = drift.pair_drift(pair(37.0), f_a, f_b, 0, RATE)
    assert same.offset == 37.0 and fit.offset == 37.0 and fit.drift_ppm is None
    assert abs(fit.measured_ppm) < 20 and fit.drift_ppm_stderr == pytest.approx(
        drift.systematic_slope_error(1650, RATE) * 1e6, rel=0.05
    )
    assert fit.note == (
        f"drift not distinguishable from 0: {fit.measured_ppm:+.0f} +- "
        f"{fit.drift_ppm_stderr:.0f} ppm over 75 s (less than 2 standard errors); one offset "
        f"used, no drift"
    )
    fields = drift.drift_fields(fit)
    assert fields["drift_ppm"] is None and fields["drift_ppm_measured"] == round(
        fit.measured_ppm, 1
    )
    f_a, f_b = _drifting_pair(2250, 2300, 37.4, -1500.0)
    line, fit = drift.pair_drift(pair(36.0), f_a, f_b, 0, RATE)
    assert abs(fit.drift_ppm + 1500) < 20 and line.offset == fit.offset
