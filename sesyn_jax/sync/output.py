"""What sesyn-sync prints: one JSON object (--json) or the same as text lines."""

from __future__ import annotations

import dataclasses
import json
import math

from sesyn_jax.sync import drift
from sesyn_jax.sync.drift import DriftFit
from sesyn_jax.sync.search import AGREE_WITHIN, FINE_FACTOR, LOW_CONFIDENCE, PairResult
from sesyn_jax.sync.views import fit_offsets, fit_views, outliers


@dataclasses.dataclass
class Report:
    """The JSON fields, the text lines, the notes (text after the lines; a JSON list) and
    what was written (text after the notes, so that a warning comes before any "wrote");
    ``clocks``: per recording, its clock against the first (``Clock``)."""

    fields: dict
    lines: list[str]
    notes: list[str]
    error: str | None = None  # an output that could not be written after the work was done
    clocks: list | None = None
    written: list[str] = dataclasses.field(default_factory=list)
    code: int = 0  # exit status: 2 an output could not be written, 3 an output was refused

    def fail(self, message: str, code: int = 2) -> None:
        """Keep the result, but report ``message`` as an error (status 'error', 'reason'), or
        with ``code`` 3 as a refusal (status 'refused')."""
        self.error, self.code = message, code
        self.fields["status"] = "refused" if code == 3 else "error"
        self.fields["reason"] = message

    def json(self) -> str:
        return json.dumps(finite(dict(self.fields, notes=self.notes)), allow_nan=False)

    def text(self) -> str:
        return "\n".join(self.lines + self.notes + self.written)


@dataclasses.dataclass
class Clock:
    """One recording's clock against the first: the moment at time t (seconds) of the first
    is at time (1 + drift_ppm x 1e-6) t + offset_seconds of this one. ``drift_ppm`` is 0 when
    no drift was measured (``drift_measured`` False); ``confidence`` the best confidence of the
    pairs that agree with it."""

    recording: str
    offset_seconds: float
    drift_ppm: float
    drift_measured: bool
    confidence: float


def pair_fields(result: PairResult, rate: float, fps_a: float, fps_b: float) -> dict:
    """JSON fields of a pair; the offset in seconds and in frames of a (at fps_a) and b (fps_b)."""
    sec = result.seconds(rate)
    d = {
        "a": result.a,
        "b": result.b,
        "offset_seconds": round(sec, 4),
        "confidence": round(float(result.confidence), 3),
        "method": result.method,
    }
    d["offset_frames_a"] = round(sec * fps_a, 2)
    d["offset_frames_b"] = round(sec * fps_b, 2)
    if fps_a == fps_b:
        d["offset_frames"] = round(sec * fps_a, 2)
    d["searches"] = {m: search_fields(s, rate) for m, s in result.searches.items()}
    return d


def search_fields(s, rate: float) -> dict:
    """JSON fields of one method's search (a ``search.Search``)."""
    d = {"offset_seconds": round(s.offset / rate, 4), "confidence": round(s.confidence, 3)}
    if s.refined:
        d["refined_at_fps"] = FINE_FACTOR * rate
    return d


def describe(seconds: float, a: str, b: str) -> str:
    if abs(seconds) < 5e-4:
        return f"{a} and {b} are in sync"
    first, later = (b, a) if seconds > 0 else (a, b)
    return f"{first} started {abs(seconds):.3f} s before {later}"


def finite(x):
    """The JSON output never holds NaN or infinity: such numbers become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def report(results, fits, names, recs, fps, rate, method, openpose_model, notes) -> Report:
    """The output of a run: its recordings, then the offsets (and drifts: ``fits``, one
    ``drift.DriftFit`` per pair result) of several views or of one pair, then how OpenPose
    keypoints were read."""
    out = Report({"status": "ok"}, [], notes)
    out.fields["recordings"] = [recording_fields(r, fps[r.path]) for r in recs]
    out.fields["model_fps"] = rate
    out.fields["method"] = method
    if len(names) > 2:
        views_section(out, results, fits, names, fps, rate)
    else:
        pair_section(out, results[0], fits[0], fps, rate)
    for r in recs:
        if r.keypoint_model:
            how = " (told from the data)" if openpose_model == "auto" else ""
            out.lines.append(f"{r.path}: OpenPose keypoints read as {r.keypoint_model}{how}")
        if r.followed:
            out.lines.append(f"{r.path}: {r.followed.describe()}")
    return out


def recording_fields(rec, fps: float) -> dict:
    return {
        "path": rec.path,
        "fps": fps,
        "frames": int(rec.poses.shape[-3]),
        **({"keypoint_model": rec.keypoint_model} if rec.keypoint_model else {}),
        **({"followed": rec.followed.to_dict()} if rec.followed else {}),
    }


def views_section(out: Report, results, fits, names, fps, rate) -> None:
    """Several recordings: the fitted offset (at the first one's start) and drift of each
    against the first, every pair with its residual, and a warning for each recording that
    agrees with none of the others."""
    idx = {n: i for i, n in enumerate(names)}
    pairs_in = [(idx[r.a], idx[r.b], f, r.confidence) for r, f in zip(results, fits)]
    measured = any(f.drift_ppm is not None for f in fits)
    if measured:
        views = drift.fit_views(len(names), pairs_in, fit_offsets)
        offsets, ppm, resid = views.offsets, views.drift_ppm, views.offset_residuals
    else:
        offsets, resid = fit_views(results, names)  # every fit holds its pair's offset
        ppm = None
    rows = [
        {
            "recording": n,
            "offset_seconds": round(float(t) / rate, 4),
            "offset_frames": round(float(t) / rate * fps[n], 2),
            "drift_ppm": None if ppm is None else round(ppm[k], 1),
        }
        for k, (n, t) in enumerate(zip(names, offsets))
    ]
    pairs = [
        dict(
            pair_fields(r, rate, fps[r.a], fps[r.b]),
            **drift.drift_fields(f, with_windows=False),
            residual_frames=round(float(e), 2),
        )
        for r, f, e in zip(results, fits, resid)
    ]
    out.fields["views"], out.fields["pairs"] = rows, pairs
    out.clocks = view_clocks(names, offsets, ppm, results, resid, rate)
    for r in results:
        out.notes.extend(f"{r.a} ~ {r.b}: {n}" for n in r.notes)
    for n in outliers(results, resid, names):
        out.notes.append(
            f"warning: {n} agrees with none of the other recordings (low confidence or "
            f"large residuals); it may show other motion or another person"
        )
    out.lines.append(f"offsets against {names[0]} (robust fit of {len(results)} pairwise offsets):")
    for v in rows:
        line = (
            f"  {v['recording']}: {v['offset_seconds']:+.3f} s ({v['offset_frames']:+.2f} "
            f"frames at {fps[v['recording']]:g} fps)"
        )
        if v["drift_ppm"] is not None and v["recording"] != names[0]:
            line += (
                f", runs {abs(v['drift_ppm']):.0f} ppm {'fast' if v['drift_ppm'] > 0 else 'slow'}"
            )
        out.lines.append(line)
    if measured and ppm is None:
        out.lines.append(views.note)
    elif not measured:
        out.lines.append(f"{fits[0].note} ({results[0].a} ~ {results[0].b})")
    out.lines.append("pairs (offset, confidence, method, residual of the fit in model frames):")
    for p in pairs:
        line = (
            f"  {p['a']} -> {p['b']}: {p['offset_seconds']:+.3f} s, {p['confidence']:.0%}, "
            f"{p['method']}, {p['residual_frames']:+.2f}"
        )
        if p["drift_ppm"] is not None:
            line += (
                f", drift {p['drift_ppm']:+.0f} ppm ({p['drift_confidence']:.0%} of the "
                f"windows on the line)"
            )
        out.lines.append(line)


def view_clocks(names, offsets, ppm, results, resid, rate: float) -> list[Clock]:
    """Each recording's clock against the first from the views' fit (offsets in model frames,
    ``ppm`` per recording or None); a recording's confidence is the best of its pairs whose
    residual lies within AGREE_WITHIN frames (0 when none does)."""
    clocks = []
    for k, n in enumerate(names):
        agree = [
            r.confidence
            for r, e in zip(results, resid)
            if n in (r.a, r.b) and abs(e) <= AGREE_WITHIN
        ]
        clocks.append(
            Clock(
                n,
                float(offsets[k]) / rate,
                0.0 if ppm is None else float(ppm[k]),
                ppm is not None,
                max(agree, default=0.0),
            )
        )
    return clocks


def pair_section(out: Report, first: PairResult, fit: DriftFit, fps, rate) -> None:
    """Two recordings: the offset (at A's start) in seconds and in each one's frames, each
    method's answer, the drift (or why none was measured), the matched persons, and a warning
    below LOW_CONFIDENCE."""
    fa, fb = fps[first.a], fps[first.b]
    out.fields.update(pair_fields(first, rate, fa, fb))
    out.fields.update(drift.drift_fields(fit))
    measured = fit.drift_ppm is not None
    out.clocks = [
        Clock(first.a, 0.0, 0.0, measured, first.confidence),
        Clock(
            first.b,
            first.seconds(rate),
            fit.drift_ppm if measured else 0.0,
            measured,
            first.confidence,
        ),
    ]
    sec = first.seconds(rate)
    out.lines.append(describe(sec, first.a, first.b))
    out.lines.append(
        f"offset: {sec:+.3f} s = {sec * fa:+.2f} frames of A ({fa:g} fps) = "
        f"{sec * fb:+.2f} frames of B ({fb:g} fps)"
    )
    out.lines.append(
        f"method: {first.method}, confidence {first.confidence:.0%}"
        + "".join(
            f"; {m}: {s.offset / rate:+.3f} s ({s.confidence:.0%})"
            for m, s in first.searches.items()
            if m != first.method
        )
    )
    out.lines.append(drift.describe_drift(fit, first.a, first.b))
    if first.persons:
        out.fields["persons"] = [pair_fields(p, rate, fa, fb) for p in first.persons]
        out.lines.append(
            "person pairs: "
            + ", ".join(
                f"{p.a}~{p.b} {p.seconds(rate):+.3f} s ({p.confidence:.0%})" for p in first.persons
            )
        )
    out.notes.extend(first.notes)
    if first.confidence < LOW_CONFIDENCE:
        out.notes.append(
            "warning: low confidence; the recordings may show different motion or people"
        )
