"""Synchronize your own pose recordings: ``sesyn-sync A B [C ...]``.

A, B, ... are pose recordings in any format ``data.readers`` reads (OpenPose folder, SYN JSON,
COCO results JSON, .npy / .npz), at any frame rate and of any length. Without --checkpoint the
model shipped in the package is used (``--checkpoint`` takes a train.py workdir, an export
folder or a PyTorch .pth).

Each recording is resampled to the model's training frame rate (joints interpolated, scores
from the nearest frame), normalized as the model expects, and embedded in overlapping chunks,
so that memory grows linearly with the length. Every candidate offset is scored by the mean
similarity of the frames it aligns (only frames whose temporal receptive field lies inside the
recording, for a model trained that way), among the offsets that align at least half of the
shorter recording (--min-overlap: recordings that share less of their time need a smaller
share), and refined to a fraction of a frame.

Methods (--method): 'learned' (the model's embeddings), 'speed' (the correlation of the
joints' vertical speeds, no model), 'auto' (the default: the learned offset, unless its
confidence is below 0.5 and the speed method's is higher; --json reports both). On the 96
held-out MOCAP-SYN test pairs (bench/sync_accuracy.py) the mean error is 0.46 frames for
'auto', 0.52 for 'learned' and 7.4 for 'speed' at 30 fps; 1.18, 1.19 and 14.2 frames of 60 fps
on the same clips rendered at 60 fps.

Confidence in [0, 1]. 'learned': the agreement, the share of frames whose own best match within
2 seconds lies within 2 frames of the offset (recordings that share no moment mostly score
below 0.4; correctly synchronized ones above 0.6). 'speed': the peak measure, how far the
best offset's correlation stands above the highest other peak of the curve more than 2 frames
away, relative to the median (1: one clear peak; 0: a tie elsewhere). Below 0.5 the result
comes with a warning.

Offsets: "B = A + d" means the moment at time t of A is at time t + d of B, so B started
recording d seconds before A when d > 0. Reported in seconds and in each recording's own
frames.

More than two recordings: every pair is matched and one offset per recording against the first
is fitted to all pairwise offsets by a robust, iteratively reweighted least-squares fit
weighted by confidence (Huber, then Tukey's biweight, so that a wrong pair is ignored); each
pair's residual is reported, and a recording that agrees with none of the others is named in a
warning. Several people (--all-persons): each person of A is matched with each person of B, the
pairs with the best confidence are kept (one-to-one), and their offsets are fused by the
confidence-weighted median, which ignores a wrongly matched person.

Exit status: 0 done; 2 bad input or flag (the message names the file and the field); 3 refused
(the message says why: no person, too few frames, no motion, nothing in common).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import math
import os
import sys

import numpy as np

MIN_FRAMES = 16  # frames with a person, at the model's frame rate
MIN_MOTION = 0.02  # joint spread over time, in person sizes (see ``motion_level``)
AGREE_WITHIN = 2  # frames
LOW_CONFIDENCE = 0.5
CHUNK = 2048  # frames embedded per call
METHODS = ("learned", "speed", "auto")


class CannotSync(ValueError):
    """A recording or pair that gives no trustworthy offset; the message says why."""


class BadInput(ValueError):
    """A flag or input that cannot be used; the message names it."""


@dataclasses.dataclass
class Search:
    """One method's outcome for one pair: offset in frames of the model's rate (fractional),
    confidence, and the score of every candidate offset (for the plot)."""

    method: str
    offset: float
    confidence: float
    lags: np.ndarray
    scores: np.ndarray


@dataclasses.dataclass
class PairResult:
    a: str
    b: str
    offset: float  # frames at the model's rate: the moment at frame m of a is at m + offset of b
    confidence: float
    method: str
    searches: dict  # method -> Search
    persons: list | None = None  # --all-persons: the matched person pairs behind this pair

    def seconds(self, rate: float) -> float:
        return self.offset / rate

    def to_dict(self, rate: float, fps_a: float, fps_b: float) -> dict:
        """JSON fields; the offset in seconds and in frames of a (at fps_a) and b (fps_b)."""
        sec = self.seconds(rate)
        d = {
            "a": self.a,
            "b": self.b,
            "offset_seconds": round(sec, 4),
            "confidence": round(float(self.confidence), 3),
            "method": self.method,
        }
        d["offset_frames_a"] = round(sec * fps_a, 2)
        d["offset_frames_b"] = round(sec * fps_b, 2)
        if fps_a == fps_b:
            d["offset_frames"] = round(sec * fps_a, 2)
        d["searches"] = {
            m: {"offset_seconds": round(s.offset / rate, 4), "confidence": round(s.confidence, 3)}
            for m, s in self.searches.items()
        }
        return d


# ----------------------------------------------------------------------------- checks


def motion_level(poses: np.ndarray) -> float:
    """How much the person moves, in person sizes: per joint seen in at least 30 % of the
    frames (and 3), the 90th percentile over frames of its distance from its median position,
    then the 75th percentile over those joints. A still person scores about its detector
    jitter (~0.005); real motion 0.1 and more."""
    from sesyn_jax.data.normalization import normalize

    seen = poses[..., 2] > 0
    xy = normalize(poses, "person")[..., :2]
    spreads = []
    for j in range(poses.shape[-2]):
        m = seen[:, j]
        if m.sum() >= max(3, 0.3 * len(poses)):
            d = np.linalg.norm(xy[m, j] - np.median(xy[m, j], axis=0), axis=-1)
            spreads.append(np.percentile(d, 90))
    return float(np.percentile(spreads, 75)) if spreads else 0.0


def check_recording(poses: np.ndarray, name: str, rate: float | None = None) -> None:
    """Refuse a (T, 17, 3) recording (at ``rate`` fps) that cannot be synchronized."""
    person = (poses[..., 2] > 0).any(-1)
    if not person.any():
        raise CannotSync(f"{name}: no person detected in any frame")
    if person.sum() < MIN_FRAMES:
        raise CannotSync(
            f"{name}: a person is seen in only {int(person.sum())} frames"
            + (f" at the model's {rate:g} fps" if rate else "")
            + f"; at least {MIN_FRAMES} are needed"
        )
    level = motion_level(poses)
    if level < MIN_MOTION:
        raise CannotSync(
            f"{name}: almost no motion (the joints move {level:.3f} of the person's size; at "
            f"least {MIN_MOTION} is needed); every offset would fit equally well"
        )


# ----------------------------------------------------------------------------- embedding


def embed(model, variables, poses: np.ndarray, chunk: int = CHUNK, progress: bool = False):
    """(T, 17, 3) normalized poses -> (T, D) embeddings, ``chunk`` frames per call with the
    model's receptive radius of context on each side, so that every frame's embedding equals
    the whole sequence's (memory linear in T; one compiled shape for long inputs)."""
    import jax

    apply = _jitted_apply(model)
    t = len(poses)
    radius = model.receptive_radius
    if t <= chunk + 2 * radius:
        size = int(-(-t // 128) * 128)
        x, mask = _padded(poses, 0, t, size)
        return np.asarray(apply(variables, x, mask))[0, :t]
    size = chunk + 2 * radius
    out = None
    starts = range(0, t, chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="embedding", unit="chunk", leave=False, file=sys.stderr)
    for s in starts:
        lo, hi = max(0, s - radius), min(t, s + chunk + radius)
        x, mask = _padded(poses, lo, hi, size)
        f = np.asarray(jax.block_until_ready(apply(variables, x, mask)))[0]
        keep = min(chunk, t - s)
        if out is None:
            out = np.zeros((t, f.shape[-1]), np.float32)
        out[s : s + keep] = f[s - lo : s - lo + keep]
    return out


def _padded(poses, lo, hi, size):
    import jax.numpy as jnp

    x = np.zeros((1, size) + poses.shape[1:], np.float32)
    x[0, : hi - lo] = poses[lo:hi]
    mask = np.zeros((1, size), bool)
    mask[0, : hi - lo] = True
    return jnp.asarray(x), jnp.asarray(mask)


@functools.lru_cache(maxsize=8)
def _jitted_apply(model):
    """The evaluation path's jit-compiled forward, one per model (equal models share it)."""
    from sesyn_jax.evaluation import make_embed_fn

    return make_embed_fn(model)


# ----------------------------------------------------------------------------- matching


def learned_search(
    f_a,
    f_b,
    inner_radius: int = 0,
    max_offset: int | None = None,
    min_overlap=0.5,
    rate: float = 30.0,
) -> Search:
    """The diagonal rule on embeddings (at ``rate`` fps), frames within ``inner_radius`` of an
    end left out; confidence as the module doc says."""
    from sesyn_jax.offset_search import agreement, search_offset
    from sesyn_jax.model import inner_mask

    mask_a = np.asarray(inner_mask(np.ones(len(f_a), bool), inner_radius))
    mask_b = np.asarray(inner_mask(np.ones(len(f_b), bool), inner_radius))
    try:
        s = search_offset(
            f_a,
            f_b,
            mask_a,
            mask_b,
            rule="diagonal",
            max_offset=max_offset,
            min_overlap=min_overlap,
            subframe=True,
        )
    except ValueError as e:
        raise CannotSync(str(e)) from None
    band = int(round(2 * rate))
    agree, _ = agreement(f_a, f_b, mask_a, mask_b, offset=float(s.offset), band=band)
    return Search("learned", float(s.offset), agree, s.lags, s.scores)


def speed_search(a, b, max_offset: int | None = None, min_overlap=0.5) -> Search:
    """The correlation of the joints' vertical speeds (normalized poses, no model)."""
    from sesyn_jax.baselines import speed_search as search

    try:
        s = search(a, b, max_offset=max_offset, min_overlap=min_overlap, subframe=True)
    except ValueError as e:
        raise CannotSync(str(e)) from None
    return Search("speed", float(s.offset), float(s.confidence), s.lags, s.scores)


def match_pair(
    feats: tuple | None,
    poses: tuple,
    names: tuple,
    method: str,
    inner_radius: int = 0,
    max_offset: int | None = None,
    rate: float = 30.0,
    min_overlap: float = 0.5,
) -> PairResult:
    """One pair by ``method``: ``feats`` (f_a, f_b) embeddings (None for 'speed'), ``poses``
    (a, b) normalized poses at the model's rate."""
    searches = {}
    if method in ("learned", "auto"):
        searches["learned"] = learned_search(
            *feats, inner_radius, max_offset, min_overlap=min_overlap, rate=rate
        )
    if method in ("speed", "auto"):
        searches["speed"] = speed_search(*poses, max_offset, min_overlap)
    best = searches.get("learned") or searches["speed"]
    if "speed" in searches and best.confidence < LOW_CONFIDENCE:
        best = max(best, searches["speed"], key=lambda s: s.confidence)
    return PairResult(names[0], names[1], best.offset, best.confidence, best.method, searches)


def fit_offsets(
    n: int,
    pairs: list[tuple[int, int, float, float]],
    iters: int = 20,
    huber: float = 2.0,
    tukey: float = 4.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets t (n,) with t[0] = 0 from pairwise (i, j, d_ij, weight), d_ij ~ t_j - t_i, by
    iteratively reweighted least squares: Huber weights first (a convex start), then Tukey's
    biweight, which gives a pair off by more than ``tukey`` frames no weight at all. Returns
    (t, residuals per pair). CannotSync when the pairs do not connect every recording."""
    _check_connected(n, [(p[0], p[1]) for p in pairs])
    rows = len(pairs)
    a = np.zeros((rows, n))
    d = np.array([p[2] for p in pairs], np.float64)
    w0 = np.array([max(p[3], 1e-3) for p in pairs], np.float64)
    for r, (i, j, _, _) in enumerate(pairs):
        a[r, i], a[r, j] = -1.0, 1.0
    a = a[:, 1:]  # t_0 = 0
    w = w0.copy()
    t = np.zeros(n - 1)
    for it in range(iters):
        sw = np.sqrt(w)
        t, *_ = np.linalg.lstsq(a * sw[:, None], d * sw, rcond=None)
        r = np.abs(d - a @ t)
        if it < iters // 2:
            w = w0 * np.where(r <= huber, 1.0, huber / np.maximum(r, 1e-9))
        else:
            tw = np.where(r < tukey, (1 - (r / tukey) ** 2) ** 2, 0.0)
            if np.linalg.matrix_rank(a[tw > 0]) < a.shape[1]:
                break  # too few trusted pairs to pin every view: keep the Huber fit
            w = w0 * tw
    full = np.concatenate([[0.0], t])
    return full, d - a @ t


def _check_connected(n: int, edges: list[tuple[int, int]]) -> None:
    reach, todo = {0}, [0]
    while todo:
        k = todo.pop()
        for i, j in edges:
            for x, y in ((i, j), (j, i)):
                if x == k and y not in reach:
                    reach.add(y)
                    todo.append(y)
    if len(reach) < n:
        missing = sorted(set(range(n)) - reach)
        raise CannotSync(
            f"recordings {missing} (0 = the first) could not be matched with the others; "
            f"no offset can be given for them"
        )


def fuse_persons(results: list[PairResult]) -> tuple[float, float]:
    """Confidence-weighted median of the matched person pairs' offsets, and the share of the
    confidence that agrees with it within AGREE_WITHIN frames."""
    offs = np.array([r.offset for r in results], np.float64)
    w = np.array([max(r.confidence, 1e-6) for r in results])
    order = np.argsort(offs)
    cum = np.cumsum(w[order]) / w.sum()
    fused = float(offs[order][np.searchsorted(cum, 0.5)])
    agree = w[np.abs(offs - fused) <= AGREE_WITHIN].sum() / w.sum()
    return fused, float(agree)


def match_persons(
    embed_fn,
    a: np.ndarray,
    b: np.ndarray,
    names: tuple,
    method: str,
    inner_radius: int = 0,
    max_offset: int | None = None,
    min_confidence: float = LOW_CONFIDENCE,
    rate: float = 30.0,
    min_overlap: float = 0.5,
) -> list[PairResult]:
    """a (P, T, 17, 3), b (Q, T', 17, 3) normalized poses; ``embed_fn(poses) -> (T, D)`` or
    None for 'speed': one-to-one person pairs by confidence."""
    usable_a, usable_b = _usable(a, names[0]), _usable(b, names[1])
    if not usable_a or not usable_b:
        raise CannotSync(
            f"no person with enough frames and motion in {names[0] if not usable_a else names[1]}"
        )
    use = method != "speed"
    fa = {p: embed_fn(a[p]) if use else None for p in usable_a}
    fb = {q: embed_fn(b[q]) if use else None for q in usable_b}
    cands = []
    for p in usable_a:
        for q in usable_b:
            try:
                r = match_pair(
                    (fa[p], fb[q]) if use else None,
                    (a[p], b[q]),
                    (f"{names[0]}#{p}", f"{names[1]}#{q}"),
                    method,
                    inner_radius,
                    max_offset,
                    rate,
                    min_overlap,
                )
            except CannotSync:
                continue
            cands.append((r, p, q))
    cands.sort(key=lambda x: -x[0].confidence)
    used_a, used_b, out = set(), set(), []
    for r, p, q in cands:
        if p in used_a or q in used_b or r.confidence < min_confidence:
            continue
        used_a.add(p)
        used_b.add(q)
        out.append(r)
    if not out:
        raise CannotSync(
            f"no person of {names[0]} matches a person of {names[1]} with confidence "
            f">= {min_confidence}"
        )
    return out


def _usable(x: np.ndarray, name: str) -> list[int]:
    ok = []
    for p in range(len(x)):
        try:
            check_recording(x[p], f"{name}#{p}")
            ok.append(p)
        except CannotSync:
            pass
    return ok


# ----------------------------------------------------------------------------- output


def plot_pair(result: PairResult, path: str, rate: float) -> None:
    """The score of every candidate offset (seconds) for each method, the chosen one marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sesyn_jax.io import atomic_write

    fig, axes = plt.subplots(
        len(result.searches), 1, figsize=(7, 2.6 * len(result.searches)), squeeze=False
    )
    for ax, (name, s) in zip(axes[:, 0], result.searches.items()):
        ok = np.isfinite(s.scores)
        ax.plot(s.lags[ok] / rate, s.scores[ok], lw=1)
        ax.axvline(s.offset / rate, color="r", ls="--", lw=1)
        label = "mean similarity" if name == "learned" else "speed correlation"
        ax.set_ylabel(label, fontsize=8)
        chosen = " (chosen)" if name == result.method else ""
        ax.set_title(
            f"{name}{chosen}: {s.offset / rate:+.3f} s, confidence {s.confidence:.0%}", fontsize=9
        )
    a, b = os.path.basename(result.a.rstrip("/")), os.path.basename(result.b.rstrip("/"))
    axes[-1, 0].set_xlabel(f"offset d in seconds (A = {a}, B = {b}; B = A + d)", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)
    plt.close(fig)


def describe(seconds: float, a: str, b: str) -> str:
    if abs(seconds) < 5e-4:
        return f"{a} and {b} are in sync"
    first, later = (b, a) if seconds > 0 else (a, b)
    return f"{first} started {abs(seconds):.3f} s before {later}"


def _finite(x):
    """The JSON output never holds NaN or infinity: such numbers become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


# ----------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise BadInput(message)


def parse_fps(text: str | None, n: int) -> list[float | None]:
    """--fps: one rate for every recording or one per recording ("60,30")."""
    if text is None:
        return [None] * n
    parts = [p.strip() for p in str(text).split(",")]
    rates = []
    for p in parts:
        try:
            x = float(p)
        except ValueError:
            raise BadInput(f"--fps: {p!r} is not a number") from None
        if not (math.isfinite(x) and x > 0):
            raise BadInput(f"--fps must be a positive, finite frame rate, got {p}")
        rates.append(x)
    if len(rates) == 1:
        return rates * n
    if len(rates) != n:
        raise BadInput(f"--fps gives {len(rates)} rates for {n} recordings; give 1 or {n}")
    return rates


def _check_plot_path(path: str) -> None:
    if os.path.isdir(path):
        raise BadInput(f"--plot {path} is a directory; give a .png file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise BadInput(f"--plot {path}: the folder {parent} does not exist")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sesyn-sync", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("recordings", nargs="+", help="two or more pose recordings")
    p.add_argument(
        "--checkpoint", default="default", help="workdir, export or .pth (default: the shipped)"
    )
    p.add_argument("--fps", help="frame rate of every recording (60) or of each (60,30)")
    p.add_argument("--method", default="auto", choices=METHODS)
    p.add_argument("--max-offset", type=float, help="largest |offset| searched, in seconds")
    p.add_argument(
        "--min-overlap",
        type=float,
        default=0.5,
        help="smallest share of the shorter recording an offset must align (default 0.5)",
    )
    p.add_argument("--resolution", help="WxH in pixels (default: from the files)")
    p.add_argument("--all-persons", action="store_true", help="track and match every person")
    p.add_argument(
        "--openpose-model", default="auto", choices=["auto", "BODY_25", "BODY_25B", "COCO"]
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", help="PNG of the offset scores of the first pair")
    p.add_argument("--progress", action="store_true", help="progress bars (default: long inputs)")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        out = run(build_parser().parse_args(argv))
    except BadInput as e:
        return _fail(as_json, "error", str(e), 2)
    except CannotSync as e:
        return _fail(as_json, "refused", str(e), 3)
    text = out.pop("_text")
    print(json.dumps(_finite(out), allow_nan=False) if as_json else text)
    return 0


def _fail(as_json: bool, status: str, message: str, code: int) -> int:
    if as_json:
        print(json.dumps({"status": status, "reason": message}))
    elif status == "refused":
        print(f"cannot synchronize: {message}")
    else:
        print(f"error: {message}", file=sys.stderr)
    return code


def run(args) -> dict:
    """Everything after parsing; BadInput and CannotSync carry the failures."""
    names = args.recordings
    if len(names) < 2:
        raise BadInput("give at least two recordings")
    rates = parse_fps(args.fps, len(names))
    res = None
    if args.resolution:
        try:
            res = tuple(int(v) for v in args.resolution.lower().split("x"))
            assert len(res) == 2 and min(res) > 0
        except (ValueError, AssertionError):
            raise BadInput(
                f"--resolution must look like 1920x1080, got {args.resolution!r}"
            ) from None
    if args.max_offset is not None and not (math.isfinite(args.max_offset) and args.max_offset > 0):
        raise BadInput(f"--max-offset must be a positive number of seconds, got {args.max_offset}")
    if not (0 < args.min_overlap < 1):
        raise BadInput(f"--min-overlap must be a share in (0, 1), got {args.min_overlap}")
    if args.plot:
        _check_plot_path(args.plot)

    from sesyn_jax.hostmem import tune_host_allocator

    tune_host_allocator()  # before JAX starts its CPU threads; see sesyn_jax/hostmem.py
    from sesyn_jax import checkpoint, convert, loading
    from sesyn_jax.data import normalization, readers
    from sesyn_jax.data.resample import resample
    from sesyn_jax.data.syn_json import PoseFormatError

    try:
        loaded = loading.load_model(args.checkpoint) if args.method != "speed" else None
        recs = [
            readers.read_recording(p, args.all_persons, args.openpose_model, r, res)
            for p, r in zip(names, rates)
        ]
    except (checkpoint.CheckpointError, convert.ConversionError, PoseFormatError) as e:
        raise BadInput(str(e)) from None
    rate = (loaded.fps if loaded else None) or 30.0
    notes = []
    fps = {}
    for r in recs:
        if r.fps is None:
            notes.append(f"{r.path}: frame rate not given; assuming {rate:g} fps (use --fps)")
        fps[r.path] = r.fps or rate
    mode = loaded.normalization if loaded else "person"
    prepared = []  # (pixels, normalized) at the model's rate
    for r in recs:
        poses = resample(r.poses, fps[r.path], rate)
        res_r = r.resolution
        if mode == "published" and res_r is None:
            res_r = _extent(poses)
            notes.append(f"{r.path}: no resolution given; the detections' extent stands in")
        prepared.append((poses, normalization.normalize(poses, mode, res_r)))
    max_lag = int(math.ceil(args.max_offset * rate)) if args.max_offset else None
    long_input = args.progress or max(len(p) for p, _ in prepared) > 5 * CHUNK
    model = loaded.model() if loaded else None
    radius = loaded.inner_radius if loaded else 0

    def embed_fn(x):
        return embed(model, loaded.variables, x, progress=long_input)

    search = dict(
        method=args.method,
        inner_radius=radius,
        max_offset=max_lag,
        rate=rate,
        min_overlap=args.min_overlap,
    )
    if not args.all_persons:
        for (poses, _), n in zip(prepared, names):
            check_recording(poses, n, rate)
        feats = [embed_fn(x) for _, x in prepared] if args.method != "speed" else None

    def pair_result(i: int, j: int) -> PairResult:
        a, b = prepared[i][1], prepared[j][1]
        if not args.all_persons:
            both = (feats[i], feats[j]) if feats else None
            return match_pair(both, (a, b), (names[i], names[j]), **search)
        persons = match_persons(embed_fn if loaded else None, a, b, (names[i], names[j]), **search)
        off, conf = fuse_persons(persons)
        first = persons[0]
        return PairResult(names[i], names[j], off, conf, first.method, first.searches, persons)

    results = []
    for i, j in itertools.combinations(range(len(names)), 2):
        try:
            results.append(pair_result(i, j))
        except CannotSync as e:
            if len(names) == 2:
                raise
            notes.append(f"{names[i]} ~ {names[j]}: {e}")
    return report(results, names, recs, fps, rate, args, notes)


def _extent(poses):
    xy = poses[..., :2][poses[..., 2] > 0]
    if not len(xy):
        return (1.0, 1.0)
    return (max(float(np.ceil(xy[:, 0].max())), 1.0), max(float(np.ceil(xy[:, 1].max())), 1.0))


def report(results, names, recs, fps, rate, args, notes) -> dict:
    """The output dict (JSON) with the text rendering under '_text'."""
    out: dict = {
        "status": "ok",
        "recordings": [
            {
                "path": r.path,
                "fps": fps[r.path],
                "frames": int(r.poses.shape[-3]),
                **({"keypoint_model": r.keypoint_model} if r.keypoint_model else {}),
            }
            for r in recs
        ],
        "model_fps": rate,
        "method": args.method,
    }
    lines = []
    if len(names) > 2:
        idx = {n: i for i, n in enumerate(names)}
        fit, resid = fit_offsets(
            len(names), [(idx[r.a], idx[r.b], r.offset, r.confidence) for r in results]
        )
        out["views"] = [
            {
                "recording": n,
                "offset_seconds": round(float(t) / rate, 4),
                "offset_frames": round(float(t) / rate * fps[n], 2),
            }
            for n, t in zip(names, fit)
        ]
        out["pairs"] = [
            dict(r.to_dict(rate, fps[r.a], fps[r.b]), residual_frames=round(float(e), 2))
            for r, e in zip(results, resid)
        ]
        for k, n in enumerate(names):
            mine = [(r, e) for r, e in zip(results, resid) if n in (r.a, r.b)]
            if (
                k
                and mine
                and all(abs(e) > 2 * AGREE_WITHIN or r.confidence < LOW_CONFIDENCE for r, e in mine)
            ):
                notes.append(
                    f"warning: {n} agrees with none of the other recordings (low confidence or "
                    f"large residuals); it may show other motion or another person"
                )
        lines.append(f"offsets against {names[0]} (robust fit of {len(results)} pairwise offsets):")
        for v in out["views"]:
            lines.append(
                f"  {v['recording']}: {v['offset_seconds']:+.3f} s ({v['offset_frames']:+.2f} "
                f"frames at {fps[v['recording']]:g} fps)"
            )
        lines.append("pairs (offset, confidence, method, residual of the fit in model frames):")
        for p in out["pairs"]:
            lines.append(
                f"  {p['a']} -> {p['b']}: {p['offset_seconds']:+.3f} s, {p['confidence']:.0%}, "
                f"{p['method']}, {p['residual_frames']:+.2f}"
            )
    else:
        first = results[0]
        out.update(first.to_dict(rate, fps[first.a], fps[first.b]))
        sec = first.seconds(rate)
        fa, fb = fps[first.a], fps[first.b]
        lines.append(describe(sec, first.a, first.b))
        lines.append(
            f"offset: {sec:+.3f} s = {sec * fa:+.2f} frames of A ({fa:g} fps) = "
            f"{sec * fb:+.2f} frames of B ({fb:g} fps)"
        )
        lines.append(
            f"method: {first.method}, confidence {first.confidence:.0%}"
            + "".join(
                f"; {m}: {s.offset / rate:+.3f} s ({s.confidence:.0%})"
                for m, s in first.searches.items()
                if m != first.method
            )
        )
        persons = first.persons
        if persons:
            out["persons"] = [p.to_dict(rate, fps[first.a], fps[first.b]) for p in persons]
            lines.append(
                "person pairs: "
                + ", ".join(
                    f"{p.a}~{p.b} {p.seconds(rate):+.3f} s ({p.confidence:.0%})" for p in persons
                )
            )
        if first.confidence < LOW_CONFIDENCE:
            notes.append(
                "warning: low confidence; the recordings may show different motion or people"
            )
    for r in recs:
        if r.keypoint_model:
            how = " (told from the data)" if args.openpose_model == "auto" else ""
            lines.append(f"{r.path}: OpenPose keypoints read as {r.keypoint_model}{how}")
    if args.plot and results:
        plot_pair(results[0], args.plot, rate)
        out["plot"] = args.plot
        lines.append(f"plot: {args.plot}")
    out["notes"] = notes
    out["_text"] = "\n".join(lines + notes)
    return out


if __name__ == "__main__":
    sys.exit(main())
