"""Synchronize your own pose recordings: ``sesyn-sync --checkpoint CKPT A B [C ...]``.

A, B, ... are pose recordings in any format ``data.readers`` reads (OpenPose folder, SYN JSON,
COCO results JSON, .npy / .npz). Prints the offset in frames and seconds, which recording
started first, and a confidence: the share of A's frames whose best match in B agrees with the
chosen offset within 2 frames. Refuses, saying why, when a recording has too few frames with a
person, no person at all, or almost no motion (then every frame looks alike and any offset fits).

Offsets: "B = A + d" means frame m of A shows the same moment as frame m + d of B, so B started
recording d frames (d / fps seconds) before A when d > 0.

More than two recordings: every pair is matched and one offset per recording against the first
is fitted to all pairwise offsets by a robust, iteratively reweighted least-squares fit
weighted by confidence (Huber, then Tukey's biweight so that a wrong pair is ignored); each
pair's residual is reported. Several people (--all-persons): each
person of A is matched with each person of B, the pairs with the best confidence are kept
(one-to-one), and the offsets are fused by the confidence-weighted median, which, unlike the
paper's plain average of five shared persons, ignores a wrongly matched person.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

MIN_FRAMES = 16
MIN_MOTION = 0.002  # median per-frame joint displacement, in image widths/heights
AGREE_WITHIN = 2


class CannotSync(ValueError):
    """A recording or pair that gives no trustworthy offset; the message says why."""


@dataclasses.dataclass
class PairResult:
    a: str
    b: str
    offset: int
    confidence: float
    matches: np.ndarray  # (M,) best frame of b for each frame of a
    similarity: np.ndarray  # (M, N)

    def to_dict(self, fps: float | None) -> dict:
        d = {
            "a": self.a,
            "b": self.b,
            "offset_frames": self.offset,
            "confidence": round(self.confidence, 3),
        }
        if fps:
            d["offset_seconds"] = round(self.offset / fps, 4)
        return d


def check_recording(poses: np.ndarray, name: str) -> None:
    """Refuse a (T, 17, 3) normalized recording that cannot be synchronized."""
    seen = poses[..., 2] > 0
    person = seen.any(-1)
    if not person.any():
        raise CannotSync(f"{name}: no person detected in any frame")
    if person.sum() < MIN_FRAMES:
        raise CannotSync(
            f"{name}: a person is seen in only {int(person.sum())} frames; at least "
            f"{MIN_FRAMES} are needed"
        )
    both = seen[1:] & seen[:-1]
    step = np.linalg.norm(poses[1:, :, :2] - poses[:-1, :, :2], axis=-1)[both]
    if step.size == 0 or float(np.median(step)) < MIN_MOTION:
        raise CannotSync(
            f"{name}: almost no motion (median joint displacement "
            f"{float(np.median(step)) if step.size else 0:.4f} of the image per "
            f"frame); every offset would fit equally well"
        )


def embed(model, variables, poses: np.ndarray) -> np.ndarray:
    import jax.numpy as jnp

    return np.asarray(model.apply(variables, jnp.asarray(poses[None], jnp.float32)))[0]


def match_pair(
    f_a: np.ndarray, f_b: np.ndarray, a: str = "A", b: str = "B", inner_radius: int = 0
) -> PairResult:
    """The published matching rule; ``inner_radius`` > 0 (a model trained on inner frames):
    only frames that far from both ends vote and are voted for."""
    from sesyn_jax.inference import frame_matches, search_offset
    from sesyn_jax.losses import l2_similarity
    from sesyn_jax.model import inner_mask
    import jax.numpy as jnp

    mask_a = np.asarray(inner_mask(np.ones(len(f_a), bool), inner_radius))
    mask_b = np.asarray(inner_mask(np.ones(len(f_b), bool), inner_radius))
    found = search_offset(f_a, f_b, mask_a, mask_b, rule="median")
    o = frame_matches(f_a, f_b)
    sim = np.asarray(l2_similarity(jnp.asarray(f_a), jnp.asarray(f_b)))
    return PairResult(a, b, int(found.offset), found.confidence, o, sim)


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
    (t, residuals per pair)."""
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


def fuse_persons(results: list[PairResult]) -> tuple[int, float]:
    """Confidence-weighted median of the matched person pairs' offsets."""
    offs = np.array([r.offset for r in results], np.float64)
    w = np.array([max(r.confidence, 1e-6) for r in results])
    order = np.argsort(offs)
    cum = np.cumsum(w[order]) / w.sum()
    fused = int(offs[order][np.searchsorted(cum, 0.5)])
    agree = w[np.abs(offs - fused) <= AGREE_WITHIN].sum() / w.sum()
    return fused, float(agree)


def match_persons(
    model,
    variables,
    a: np.ndarray,
    b: np.ndarray,
    name_a: str,
    name_b: str,
    min_confidence: float = 0.3,
    inner_radius: int = 0,
) -> list[PairResult]:
    """a (P, T, 17, 3), b (Q, T', 17, 3): one-to-one person pairs by confidence."""
    usable_a = _usable(a, name_a)
    usable_b = _usable(b, name_b)
    if not usable_a or not usable_b:
        raise CannotSync(
            f"no person with enough frames and motion in {name_a if not usable_a else name_b}"
        )
    fa = {p: embed(model, variables, a[p]) for p in usable_a}
    fb = {q: embed(model, variables, b[q]) for q in usable_b}
    cands = sorted(
        (
            (match_pair(fa[p], fb[q], f"{name_a}#{p}", f"{name_b}#{q}", inner_radius), p, q)
            for p in usable_a
            for q in usable_b
        ),
        key=lambda x: -x[0].confidence,
    )
    used_a, used_b, out = set(), set(), []
    for r, p, q in cands:
        if p in used_a or q in used_b or r.confidence < min_confidence:
            continue
        used_a.add(p)
        used_b.add(q)
        out.append(r)
    if not out:
        raise CannotSync(
            f"no person of {name_a} matches a person of {name_b} with confidence "
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


def plot_pair(result: PairResult, path: str, fps: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import os

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    # robust colour range: the first and last frames (zero padding of the temporal
    # convolution) are far from everything and would wash out the rest
    lo = float(np.percentile(result.similarity, 10))
    im = ax.imshow(
        result.similarity,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        vmin=lo,
        vmax=float(result.similarity.max()),
    )
    fig.colorbar(im, ax=ax, label="similarity  -||f_A - f_B||^2")
    m = np.arange(len(result.matches))
    agree = np.abs((result.matches - m) - result.offset) <= AGREE_WITHIN
    ax.scatter(result.matches[agree], m[agree], s=6, c="white", label="best match (agrees)")
    ax.scatter(result.matches[~agree], m[~agree], s=6, c="red", label="best match (disagrees)")
    n = result.similarity.shape[1]
    ax.plot(
        np.clip(m + result.offset, 0, n - 1),
        m,
        "w--",
        lw=1,
        label=f"offset {result.offset:+d} frames",
    )
    a, b = os.path.basename(result.a.rstrip("/")), os.path.basename(result.b.rstrip("/"))
    ax.set_xlabel(f"frame of B = {b}", fontsize=8)
    ax.set_ylabel(f"frame of A = {a}", fontsize=8)
    sec = f" ({result.offset / fps:+.2f} s)" if fps else ""
    ax.set_title(f"B = A {result.offset:+d} frames{sec}, confidence {result.confidence:.0%}")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.6)
    fig.tight_layout()
    from sesyn_jax.io import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)
    plt.close(fig)


def describe(offset: int, a: str, b: str, fps: float | None) -> str:
    sec = f" ({abs(offset) / fps:.3f} s)" if fps else ""
    if offset == 0:
        return f"{a} and {b} are in sync (offset 0 frames)"
    first, later = (b, a) if offset > 0 else (a, b)
    return (
        f"frame m of {a} = frame m {offset:+d} of {b}: {first} started {abs(offset)} "
        f"frames{sec} before {later}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="sesyn-sync", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="train.py workdir, export or .pth")
    parser.add_argument("recordings", nargs="+", help="two or more pose recordings")
    parser.add_argument("--fps", type=float, help="frame rate (default: from the files)")
    parser.add_argument("--resolution", help="WxH in pixels (default: from the files)")
    parser.add_argument("--all-persons", action="store_true", help="track and match every person")
    parser.add_argument(
        "--openpose-model", default="auto", choices=["auto", "BODY_25", "BODY_25B", "COCO"]
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", help="PNG of the similarity matrix of the first pair")
    args = parser.parse_args(argv)
    from sesyn_jax.hostmem import tune_host_allocator

    tune_host_allocator()  # before JAX starts its CPU threads; see sesyn_jax/hostmem.py
    if len(args.recordings) < 2:
        parser.error("give at least two recordings")
    res = None
    if args.resolution:
        try:
            res = tuple(int(v) for v in args.resolution.lower().split("x"))
            assert len(res) == 2 and min(res) > 0
        except (ValueError, AssertionError):
            parser.error(f"--resolution must look like 1920x1080, got {args.resolution!r}")

    from sesyn_jax import checkpoint, loading
    from sesyn_jax.data import readers
    from sesyn_jax.data.syn_json import PoseFormatError

    try:
        loaded = loading.load_model(args.checkpoint)
        recs = [
            readers.read_recording(p, args.all_persons, args.openpose_model, args.fps, res)
            for p in args.recordings
        ]
    except (checkpoint.CheckpointError, PoseFormatError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fps = args.fps or next((r.fps for r in recs if r.fps), None)
    names = [r.path for r in recs]
    model, variables = loaded.model(), loaded.variables
    out: dict = {"recordings": names, "fps": fps}
    try:
        norm = [readers.normalize_recording(r.poses, r.resolution) for r in recs]
        if args.all_persons:
            person_pairs = match_persons(
                model,
                variables,
                norm[0],
                norm[1],
                names[0],
                names[1],
                inner_radius=loaded.inner_radius,
            )
            offset, conf = fuse_persons(person_pairs)
            results = [
                PairResult(
                    names[0],
                    names[1],
                    offset,
                    conf,
                    person_pairs[0].matches,
                    person_pairs[0].similarity,
                )
            ]
            out["persons"] = [r.to_dict(fps) for r in person_pairs]
        else:
            for n, x in zip(names, norm):
                check_recording(x, n)
            feats = [embed(model, variables, x) for x in norm]
            results = [
                match_pair(feats[i], feats[j], names[i], names[j], loaded.inner_radius)
                for i in range(len(feats))
                for j in range(i + 1, len(feats))
            ]
    except CannotSync as e:
        msg = f"cannot synchronize: {e}"
        print(json.dumps({"status": "refused", "reason": str(e)}) if args.json else msg)
        return 3

    first = results[0]
    if len(recs) > 2:
        idx = {n: i for i, n in enumerate(names)}
        fit, resid = fit_offsets(
            len(names), [(idx[r.a], idx[r.b], r.offset, r.confidence) for r in results]
        )
        out["views"] = [
            {
                "recording": n,
                "offset_frames": int(round(t)),
                **({"offset_seconds": round(float(t) / fps, 4)} if fps else {}),
            }
            for n, t in zip(names, fit)
        ]
        out["pairs"] = [
            dict(r.to_dict(fps), residual_frames=round(float(e), 2)) for r, e in zip(results, resid)
        ]
    else:
        out.update(first.to_dict(fps))
    out["status"] = "ok"
    if args.plot:
        plot_pair(first, args.plot, fps)
        out["plot"] = args.plot
    if args.json:
        print(json.dumps(out))
        return 0
    if len(recs) > 2:
        print(f"offsets against {names[0]} (robust fit of {len(results)} pairwise offsets):")
        for v in out["views"]:
            sec = f" ({v['offset_seconds']:+.3f} s)" if fps else ""
            print(f"  {v['recording']}: {v['offset_frames']:+d} frames{sec}")
        print("pairs (offset, confidence, residual of the fit):")
        for p in out["pairs"]:
            print(
                f"  {p['a']} -> {p['b']}: {p['offset_frames']:+d}, {p['confidence']:.0%}, "
                f"{p['residual_frames']:+.2f}"
            )
    else:
        print(describe(first.offset, names[0], names[1], fps))
        print(
            f"offset: {first.offset:+d} frames"
            + (f" = {first.offset / fps:+.3f} s" if fps else " (give --fps for seconds)")
        )
        print(
            f"confidence: {first.confidence:.0%} of the frames of {names[0]} agree within "
            f"{AGREE_WITHIN} frames"
        )
        if "persons" in out:
            print(
                "person pairs: "
                + ", ".join(
                    f"{p['a']}~{p['b']} {p['offset_frames']:+d} ({p['confidence']:.0%})"
                    for p in out["persons"]
                )
            )
        if first.confidence < 0.3:
            print("warning: low confidence; the recordings may show different motion or people")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
