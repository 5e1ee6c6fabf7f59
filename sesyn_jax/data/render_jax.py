"""Training pairs rendered on the device: ``render.RenderedPairs`` as one pure JAX function of a
PRNG key and the training clips held in device memory, so that the host hands over a key per
step and nothing else.

One pair is the numpy renderer's pair (see ``render``: clip and window, time-stretch, mirroring,
two cameras on an image of a drawn size, detector-like corruption and the errors of real
detectors, an independent crop), brought to the model's input normalization and padded to the
bucket, in two pure stages:

  draw(key, spec, lengths)                 -> Draws: every random number of one pair
  render_pair(spec, clips, lengths, draws) -> (pair arrays, info): projection, corruption,
                                              crop, normalization

The draws follow the numpy renderer's distributions (same ranges, same dependence of the window,
the crop and the focal lengths on earlier draws); the random streams themselves differ: one
threefry call per pair gives its scalar draws and the seed of a counter hash for the ~20,000
per-joint uniforms (pixel noise as inverse-erf normals, scores, missing joints, dropped frames);
a second one, from the key folded with 1, gives those of the detector errors (the other
person, the runs of swaps, jumps, gaps and bursts, burst noise, occluded joints' drops) when
any of them is on (then all are drawn, with masks, ``run_mask``, choosing where they apply);
with every one off (the default) they are neither drawn nor computed.
Because the rendering takes the draws as data, a test can feed it the numpy renderer's own draws
and compare the two pair for pair. Static shapes: the clips are packed into one padded
(K, L, 17, 3) array with their lengths; every pair renders a full window of ``spec.window``
frames of which the first ``Draws.window`` are real (a short clip or a strong stretch gives
fewer), and the crops are gathered into the bucket with masks.

``make_device_renderer`` vmaps this over the batch under one ``jax.jit`` whose outputs carry
the train step's data sharding (each device renders its own rows); ``step_key(seed, step)``
is the key of a training step, so a resumed run renders the same batches.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sesyn_jax.data import normalization as norm_lib
from sesyn_jax.data.pairs import bucket_for
from sesyn_jax.data.render import TORSO, RenderedPairs, detector_errors_on
from sesyn_jax.graph import MIRROR

Array = jax.Array
TRAIN_KEYS = ("poses1", "mask1", "poses2", "mask2", "offset")
# cameras.sample_camera_pair's separation of the two azimuths, degrees
SEPARATION_DEG = (30.0, 150.0)
_STREAM = 0x52454E44  # folded into the seed so render keys never equal the model's init key
RUNS = ("swap", "jump", "gap", "burst")  # the detector errors that come in runs of frames


@dataclasses.dataclass(frozen=True)
class Spec:
    """The static part of a renderer (hashable, a jit constant): the numpy renderer's crop
    (``window`` = frames + max_offset), its ``Augment`` ranges, the bucket the views are padded
    to and the model's input normalization."""

    frames: int
    max_offset: int
    min_length: int
    bucket: int
    normalization: str
    sizes: tuple
    stretch: tuple
    mirror: float
    focal: tuple
    distance_m: tuple
    height_m: tuple
    noise: tuple
    missing_prob: tuple
    drop_frame_prob: tuple
    swap_prob: float
    swap_frames: tuple
    jump_prob: float
    jump_frames: tuple
    jump_distance_m: tuple
    gap_prob: float
    gap_frames: tuple
    burst_prob: float
    burst_frames: tuple
    burst_noise: float
    occluded_margin_m: float
    occluded_score_cut: float
    occluded_drop: float

    @property
    def window(self) -> int:
        return self.frames + self.max_offset

    @classmethod
    def of(cls, pairs: RenderedPairs, bucket: int, normalization: str) -> "Spec":
        norm_lib.check_mode(normalization)
        cfg, aug = pairs.cfg, pairs.augment
        if bucket < cfg.frames:
            raise ValueError(f"bucket {bucket} is shorter than the {cfg.frames} frames of a view")
        fields = {f.name: getattr(aug, f.name) for f in dataclasses.fields(aug)}
        fields["sizes"] = tuple(tuple(int(x) for x in s) for s in aug.sizes)
        for name in RUNS:
            fields[name + "_frames"] = tuple(int(x) for x in getattr(aug, name + "_frames"))
        return cls(cfg.frames, cfg.max_offset, pairs.min_length, bucket, normalization, **fields)


class Draws(NamedTuple):
    """Every random number of one pair (leading batch axis when vmapped). Views on axis 0 of
    the per-view fields; W = Spec.window."""

    clip: Array  # () int32, index into the packed clips
    stretch: Array  # () motion frames per output frame
    window: Array  # () int32, real frames of the window (<= W)
    start: Array  # () first motion frame (fractional)
    mirror: Array  # () bool
    size: Array  # () int32, index into Spec.sizes
    azimuth: Array  # () degrees, camera 1
    separation: Array  # () degrees, signed: camera 2 sits at azimuth + separation
    focal: Array  # (2,) pixels
    distance: Array  # (2,) metres, before the floor that keeps the motion in the image
    height: Array  # (2,) metres
    noise: Array  # (2,) pixel noise sigma / the person's median height in pixels
    missing_prob: Array  # (2,)
    drop_prob: Array  # (2,)
    pixel_noise: Array  # (2, W, 17, 2) standard normal
    score: Array  # (2, W, 17) uniform in [0.75, 0.98): the score before the noise penalty
    missing_u: Array  # (2, W, 17) uniform in [0, 1): a joint is kept when >= missing_prob
    drop_u: Array  # (2, W) uniform in [0, 1): a frame is kept when >= drop_prob
    offset: Array  # () int32, category_id1 - category_id2
    length: Array  # (2,) int32, frames each view keeps
    # the detector's errors (render.draw_errors, render.other_person); None when every error is
    # off (``render.detector_errors_on``): then nothing of them is drawn or computed
    other_start: Array  # () first motion frame of the other person's window
    other_angle: Array  # () radians, direction of the other person's displacement
    other_distance: Array  # () metres
    swap_u: Array  # (2, W) a swap run starts where < Spec.swap_prob
    swap_len: Array  # (2, W) int32, its length
    jump_u: Array  # (2, W)
    jump_len: Array  # (2, W) int32
    gap_u: Array  # (2, W)
    gap_len: Array  # (2, W) int32
    burst_u: Array  # (2, W)
    burst_len: Array  # (2, W) int32
    burst_noise: Array  # (2, W, 17, 2) standard normal
    occluded_u: Array  # (2, W, 17) an occluded joint goes missing where < occluded_drop


ERROR_FIELDS = (
    ("other_start", "other_angle", "other_distance")
    + tuple(f"{name}_{kind}" for name in RUNS for kind in ("u", "len"))
    + ("burst_noise", "occluded_u")
)


def pack_clips(pairs: RenderedPairs) -> tuple[np.ndarray, np.ndarray]:
    """The renderer's clips as one zero-padded (K, L, 17, 3) float32 array and their lengths
    (K,) int32."""
    lengths = np.array([len(c.joints) for c in pairs.clips], np.int32)
    packed = np.zeros((len(lengths), lengths.max()) + pairs.clips[0].joints.shape[1:], np.float32)
    for i, c in enumerate(pairs.clips):
        packed[i, : len(c.joints)] = c.joints
    return packed, lengths


_GOLDEN = 0x9E3779B9


def _fmix32(x: Array) -> Array:
    """MurmurHash3's 32-bit finalizer: every input bit flips each output bit with probability
    about 1/2."""
    x ^= x >> 16
    x *= jnp.uint32(0x85EBCA6B)
    x ^= x >> 13
    x *= jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def unit_uniform(bits: Array) -> Array:
    """uint32 bits -> float32 uniform in the open interval (0, 1), 24 bits of resolution."""
    return ((bits >> 8).astype(jnp.float32) + 0.5) * np.float32(2.0**-24)


def hashed_uniforms(seed: Array, shape: tuple) -> Array:
    """Uniforms in (0, 1) of ``shape`` from a counter hash of the two uint32 words ``seed``.
    The per-joint draws of a pair (about 20,000) come from here rather than from threefry, which
    on the CPU costs a hundred times more per number; the seed itself is drawn by threefry."""
    i = jnp.arange(int(np.prod(shape)), dtype=jnp.uint32)
    return unit_uniform(_fmix32(_fmix32(i * jnp.uint32(_GOLDEN) + seed[0]) ^ seed[1])).reshape(
        shape
    )


def _between(u: Array, lo, hi) -> Array:
    return lo + (hi - lo) * u


def _integer(u: Array, lo: Array, hi: Array) -> Array:
    """Uniform integer in [lo, hi] (inclusive) from u in (0, 1)."""
    return jnp.minimum(lo + jnp.floor(u * (hi - lo + 1)).astype(jnp.int32), hi)


def draw(key: Array, spec: Spec, lengths: Array) -> Draws:
    """The random draws of one pair, as ``RenderedPairs.pair`` makes them: a clip with
    probability proportional to its frames, a log-uniform stretch, the window the clip gives at
    that stretch and a uniform start in it, the image size, the cameras, the corruption, and the
    crop (``render.scaled_crop``: full windows crop as configured; shorter ones shift less so
    that both views keep ``min_length`` frames). One threefry call gives the pair's scalars and
    the seed of its per-joint draws (``hashed_uniforms``)."""
    bits = jax.random.bits(key, (25,))
    u, seed = iter(unit_uniform(bits[:23])), bits[23:]
    w_max = spec.window
    cdf = jnp.cumsum(lengths.astype(jnp.float32)) / lengths.sum()
    clip = jnp.minimum(jnp.sum(cdf <= next(u)), len(lengths) - 1)  # np.random's choice
    n = lengths[clip]
    stretch = jnp.exp(_between(next(u), *np.log(spec.stretch)))
    available = jnp.floor((n - 1) / stretch).astype(jnp.int32) + 1
    window = jnp.minimum(w_max, available)
    start = next(u) * (n - 1 - (window - 1) * stretch)
    mirror = next(u) < spec.mirror
    size = _integer(next(u), 0, len(spec.sizes) - 1)
    long_side = jnp.asarray([max(s) for s in spec.sizes], jnp.float32)[size]
    azimuth = 360.0 * next(u)
    sign = jnp.where(next(u) < 0.5, -1.0, 1.0)
    separation = _between(next(u), *SEPARATION_DEG) * sign
    two = lambda lo_hi: _between(jnp.stack([next(u), next(u)]), *lo_hi)
    focal = two(spec.focal) * long_side
    distance, height = two(spec.distance_m), two(spec.height_m)
    noise, missing_prob = two(spec.noise), two(spec.missing_prob)
    drop_prob = two(spec.drop_frame_prob)
    shift = jnp.where(
        window >= w_max,
        spec.max_offset,
        jnp.minimum(spec.max_offset, jnp.maximum((window - spec.min_length) // 2, 0)),
    )
    offset = _integer(next(u), -shift, shift)
    kept = window - shift  # the crop's frames: lengths drawn from [kept - shift, kept]
    length = _integer(jnp.stack([next(u), next(u)]), kept - shift, kept)
    per_frame = hashed_uniforms(seed, (2, w_max, 17 * 4 + 1))
    per_joint = per_frame[..., :-1].reshape(2, w_max, 17, 4)
    errors = error_draws(key, spec, n, window, stretch) if detector_errors_on(spec) else {}
    return Draws(
        clip=clip.astype(jnp.int32),
        stretch=stretch,
        window=window,
        start=start,
        mirror=mirror,
        size=size,
        azimuth=azimuth,
        separation=separation,
        focal=focal,
        distance=distance,
        height=height,
        noise=noise,
        missing_prob=missing_prob,
        drop_prob=drop_prob,
        pixel_noise=np.float32(np.sqrt(2)) * jax.lax.erf_inv(2 * per_joint[..., :2] - 1),
        score=_between(per_joint[..., 2], 0.75, 0.98),
        missing_u=per_joint[..., 3],
        drop_u=per_frame[..., -1],
        offset=offset,
        length=length,
        **{f: errors.get(f) for f in ERROR_FIELDS},
    )


def error_draws(key: Array, spec: Spec, n: Array, window: Array, stretch: Array) -> dict:
    """The Draws fields of the detector's errors (ERROR_FIELDS) of the pair drawn from ``key``,
    from a key of their own (``key`` folded with 1), so that the other draws stay those of a
    renderer without them. ``n``: the clip's frames; ``window``, ``stretch``: the pair's."""
    bits = jax.random.bits(jax.random.fold_in(key, 1), (5,))
    u, seed = unit_uniform(bits[:3]), bits[3:]
    errors = hashed_uniforms(seed, (2, spec.window, 2 * len(RUNS) + 17 * 3))
    runs = {}
    for i, name in enumerate(RUNS):
        lo, hi = getattr(spec, name + "_frames")
        runs[name + "_u"] = errors[..., 2 * i]
        runs[name + "_len"] = _integer(errors[..., 2 * i + 1], lo, hi)
    error_joints = errors[..., 2 * len(RUNS) :].reshape(2, spec.window, 17, 3)
    return dict(
        other_start=u[0] * (n - 1 - (window - 1) * stretch),
        other_angle=np.float32(2 * np.pi) * u[1],
        other_distance=_between(u[2], *spec.jump_distance_m),
        burst_noise=np.float32(np.sqrt(2)) * jax.lax.erf_inv(2 * error_joints[..., :2] - 1),
        occluded_u=error_joints[..., 2],
        **runs,
    )


def bitonic_sort(x: Array) -> Array:
    """x sorted along its last axis, whose length is a power of 2: a bitonic sorting network,
    elementwise minima and maxima over static reshapes (on the CPU several times faster than
    ``jnp.sort``, which compares element by element)."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"bitonic_sort needs a power of 2 elements, got {n}")
    k = 2
    while k <= n:
        j = k // 2
        while j >= 1:
            y = x.reshape(x.shape[:-1] + (n // (2 * j), 2, j))
            a, b = y[..., 0, :], y[..., 1, :]
            lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
            up = jnp.asarray((np.arange(n // (2 * j)) * 2 * j) & k == 0)[:, None]
            x = jnp.stack([jnp.where(up, lo, hi), jnp.where(up, hi, lo)], -2).reshape(x.shape)
            j //= 2
        k *= 2
    return x


def masked_median(x: Array, mask: Array) -> Array:
    """np.median of x[mask] along axis 0 (x (N, ...), mask (N,)); inf when nothing is masked."""
    n = mask.sum()
    full = 1 << max(int(x.shape[0] - 1).bit_length(), 0)
    x = jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, jnp.inf)
    x = jnp.pad(x, [(0, full - x.shape[0])] + [(0, 0)] * (x.ndim - 1), constant_values=jnp.inf)
    s = jnp.moveaxis(bitonic_sort(jnp.moveaxis(x, 0, -1)), -1, 0)
    return (s[jnp.maximum((n - 1) // 2, 0)] + s[jnp.maximum(n // 2, 0)]) / 2


def look_at(center: Array, target: Array) -> Array:
    """``cameras.look_at``'s rotation (rows: right, down, forward; world y up)."""
    forward = target - center
    forward = forward / jnp.linalg.norm(forward)
    right = jnp.cross(forward, jnp.array([0.0, 1.0, 0.0]))
    right = right / jnp.linalg.norm(right)
    return jnp.stack([right, jnp.cross(forward, right), forward])


def project(rotation, center, focal, width, height, points) -> tuple[Array, Array]:
    """``cameras.project``: points (..., 3) world -> (pixels (..., 2), depth (...,))."""
    # (points - center) @ rotation.T as sums of products: a 3 x 3 matrix product per pair is
    # slower on the CPU than the elementwise form
    rel = points - center
    x = sum(rel[..., k, None] * rotation[:, k] for k in range(3))
    z = x[..., 2]
    safe = jnp.where(z > 1e-6, z, 1e-6)
    return focal * x[..., :2] / safe[..., None] + jnp.stack([width / 2, height / 2]), z


def window_motion(clips: Array, lengths: Array, spec: Spec, d: Draws) -> tuple[Array, Array]:
    """The window's 3D joints (W, 17, 3), time-stretched and mirrored, and its real frames
    (W,) bool: ``resample.interpolate`` at start + stretch * k, then ``render.mirror``."""
    n = lengths[d.clip]
    pos = jnp.clip(d.start + d.stretch * jnp.arange(spec.window, dtype=jnp.float32), 0, n - 1)
    lo = jnp.minimum(jnp.floor(pos).astype(jnp.int32), n - 1)
    hi = jnp.minimum(lo + 1, n - 1)
    w = (pos - lo)[:, None, None]
    joints = clips[d.clip, lo] * (1 - w) + clips[d.clip, hi] * w
    mirrored = joints[:, np.asarray(MIRROR)] * jnp.array([-1.0, 1.0, 1.0])
    return jnp.where(d.mirror, mirrored, joints), jnp.arange(spec.window) < d.window


def cameras(joints: Array, real: Array, d: Draws, width, height):
    """``cameras.sample_camera_pair`` for the drawn azimuths, focal lengths, distances and
    heights, over the real frames of the window: (rotations (2, 3, 3), centres (2, 3))."""
    frames = real.sum()
    hips = joints[:, 11:13].mean(1)
    hx, hz = (jnp.sum(jnp.where(real, hips[:, i], 0.0)) / frames for i in (0, 2))
    y = jnp.where(real[:, None], joints[..., 1], 0.0).sum() / (frames * joints.shape[1])
    target = jnp.stack([hx, y, hz])
    horizontal = jnp.hypot(joints[..., 0] - hx, joints[..., 2] - hz)
    spread = jnp.max(jnp.where(real[:, None], horizontal, -jnp.inf))
    ys = joints[..., 1]
    vertical = jnp.max(jnp.where(real[:, None], ys, -jnp.inf)) - jnp.min(
        jnp.where(real[:, None], ys, jnp.inf)
    )
    # distance so that the motion's extent fills at most ~80 % of the image height
    need = d.focal * jnp.maximum(vertical, 2 * spread * height / width) / (0.8 * height) + spread
    dist = jnp.maximum(d.distance, need)
    az = jnp.deg2rad(d.azimuth + jnp.array([0.0, 1.0]) * d.separation)
    centres = target + jnp.stack([dist * jnp.sin(az), jnp.zeros(2), dist * jnp.cos(az)], -1)
    centres = centres.at[:, 1].set(d.height)
    return jax.vmap(look_at, (0, None))(centres, target), centres


# the fields of Draws that hold one value per view (axis 0)
VIEW_FIELDS = (
    ("noise", "missing_prob", "drop_prob", "pixel_noise", "score", "missing_u", "drop_u")
    + tuple(f"{name}_{kind}" for name in RUNS for kind in ("u", "len"))
    + ("burst_noise", "occluded_u")
)


def _fold(op, xs: list) -> Array:
    """op(op(xs[0], xs[1]), ...): a reduction over the 17 joints as elementwise operations,
    which XLA fuses on the CPU where its reduce over a short axis does not."""
    out = xs[0]
    for x in xs[1:]:
        out = op(out, x)
    return out


def person_pixels(uv: Array, real: Array) -> Array:
    """``render._person_pixels``: the median over the real frames of the person's box height
    in pixels (uv (W, 17, 2), real (W,) bool)."""
    y = [uv[:, j, 1] for j in range(uv.shape[1])]
    return masked_median(_fold(jnp.maximum, y) - _fold(jnp.minimum, y), real)


def detect(uv, z, sigma, width, height, v: dict) -> Array:
    """``cameras.detected`` of one view with its draws ``v`` (the VIEW_FIELDS of one view) and
    pixel sigma: (W, 17, 3) (x, y, score) pixels, every channel 0 where not detected."""
    uv = uv + v["pixel_noise"] * sigma
    err = jnp.hypot(v["pixel_noise"][..., 0], v["pixel_noise"][..., 1])
    err = err * sigma / jnp.maximum(sigma, 1e-6)
    score = jnp.clip(v["score"] - 0.08 * err, 0.05, 1.0)
    inside = (z > 0.1) & (uv[..., 0] >= 0) & (uv[..., 0] < width)
    inside &= (uv[..., 1] >= 0) & (uv[..., 1] < height)
    keep = inside & (v["missing_u"] >= v["missing_prob"])
    keep &= (v["drop_u"] >= v["drop_prob"])[:, None]
    out = jnp.concatenate([uv, score[..., None]], -1)
    return jnp.where(keep[..., None], out, 0.0)


def run_mask(start: Array, length: Array, longest: int) -> Array:
    """``render.run_mask`` in static shapes: frame t (last axis) is covered when a run starts
    at s <= t (``start``) and lasts ``length`` > t - s frames; ``longest`` bounds the lengths."""
    covered = start & (length > 0)
    for k in range(1, longest):
        began = start & (length > k)
        covered |= jnp.pad(began, [(0, 0)] * (began.ndim - 1) + [(k, 0)])[..., : start.shape[-1]]
    return covered


def detect_with_errors(
    spec: Spec, uv, z, other_uv, other_z, px_height, width, height, v: dict
) -> tuple[Array, Array]:
    """``render.detect_with_errors`` of one view: the person projected (uv (W, 17, 2), depth
    z (W, 17)), the other person likewise, the person's median height in pixels and the view's
    draws ``v``. (W, 17, 3) (x, y, score) pixels, and the pixel sigma."""
    runs = {
        name: run_mask(
            v[name + "_u"] < getattr(spec, name + "_prob"),
            v[name + "_len"],
            getattr(spec, name + "_frames")[1],
        )
        for name in RUNS
    }
    uv = jnp.where(runs["jump"][:, None, None], other_uv, uv)
    z = jnp.where(runs["jump"][:, None], other_z, z)
    burst = v["burst_noise"] * (spec.burst_noise * px_height)
    uv = uv + jnp.where(runs["burst"][:, None, None], burst, 0.0)
    sigma = v["noise"] * px_height
    out = detect(uv, z, sigma, width, height, v)
    torso = sum(z[:, j] for j in TORSO) / len(TORSO)
    occluded = z > torso[:, None] + spec.occluded_margin_m
    score = out[..., 2] * jnp.where(occluded, 1 - spec.occluded_score_cut, 1.0)
    out = jnp.concatenate([out[..., :2], score[..., None]], -1)
    lost = (occluded & (v["occluded_u"] < spec.occluded_drop)) | runs["gap"][:, None]
    out = jnp.where(lost[..., None], 0.0, out)
    # the permutation as a product with its 0/1 matrix (exact at full precision): a gather
    # over the joint axis costs the CPU several times the rest of the rendering
    perm = np.eye(len(MIRROR), dtype=np.float32)[list(MIRROR)]  # swapped[j] = out[MIRROR[j]]
    swapped = jnp.einsum("kj,tjc->tkc", perm, out, precision=jax.lax.Precision.HIGHEST)
    out = jnp.where(runs["swap"][:, None, None], swapped, out)
    return out, sigma


def crop(view: Array, first: Array, length: Array, bucket: int) -> tuple[Array, Array]:
    """Frames [first, first + length) of a (W, 17, 3) view at the start of ``bucket`` frames,
    zero after them, and the mask (bucket,) of the kept frames."""
    t = jnp.arange(bucket)
    mask = t < length
    frames = view[jnp.minimum(first + t, view.shape[0] - 1)]
    return jnp.where(mask[:, None, None], frames, 0.0), mask


def normalize(poses: Array, mask: Array, mode: str, width, height) -> Array:
    """``normalization.normalize`` of the real frames (``mask``) of pixel poses (T, 17, 3);
    every channel of an unseen joint and of a padded frame is 0."""
    seen = (poses[..., 2] > 0) & mask[:, None]
    xy = poses[..., :2]
    if mode == "published":
        xy = xy / jnp.stack([width, height]) - 0.5
    else:  # 'person': medians over the frames with two joints seen (see person_box)
        joints = range(xy.shape[1])
        lo = _fold(jnp.minimum, [jnp.where(seen[:, j, None], xy[:, j], jnp.inf) for j in joints])
        hi = _fold(jnp.maximum, [jnp.where(seen[:, j, None], xy[:, j], -jnp.inf) for j in joints])
        ok = seen.sum(-1) >= 2
        box = jnp.concatenate([(lo + hi) / 2, (hi - lo).max(-1, keepdims=True)], -1)
        medians = masked_median(box, ok)  # one sort: centre x, centre y, size
        centre, size = medians[:2], medians[2]
        centre = jnp.where(ok.any(), centre, 0.0)
        size = jnp.where(ok.any() & (size > 0), size, 1.0)
        xy = (xy - centre) / size
    out = jnp.concatenate([xy, poses[..., 2:]], -1)
    return jnp.where(seen[..., None], out, 0.0)


def render_pair(spec: Spec, clips: Array, lengths: Array, d: Draws) -> tuple[dict, dict]:
    """One pair from its draws: ({poses1, mask1, poses2, mask2, offset}, {sigma_px (2,)}).
    Poses (bucket, 17, 3) in the model's input normalization, masks (bucket,) bool."""
    sizes = jnp.asarray(spec.sizes, jnp.float32)
    width, height = sizes[d.size, 0], sizes[d.size, 1]
    joints, real = window_motion(clips, lengths, spec, d)
    rotations, centres = cameras(joints, real, d, width, height)
    errors = detector_errors_on(spec)  # static: with every error off none is computed
    if errors:
        other = window_motion(clips, lengths, spec, d._replace(start=d.other_start))[0]
        other = other + d.other_distance * jnp.stack(
            [jnp.sin(d.other_angle), 0.0, jnp.cos(d.other_angle)]
        )

    def view(rotation, centre, focal, v, first, length):
        uv, z = project(rotation, centre, focal, width, height, joints)
        px_height = person_pixels(uv, real)
        if errors:
            other_uv, other_z = project(rotation, centre, focal, width, height, other)
            pixels, sigma = detect_with_errors(
                spec, uv, z, other_uv, other_z, px_height, width, height, v
            )
        else:
            sigma = v["noise"] * px_height
            pixels = detect(uv, z, sigma, width, height, v)
        poses, mask = crop(pixels, first, length, spec.bucket)
        return normalize(poses, mask, spec.normalization, width, height), mask, sigma

    # both views at once: one vectorized pass instead of two
    first = jnp.stack([jnp.maximum(d.offset, 0), jnp.maximum(-d.offset, 0)])
    per_view = {k: getattr(d, k) for k in VIEW_FIELDS}
    poses, masks, sigmas = jax.vmap(view)(rotations, centres, d.focal, per_view, first, d.length)
    out = {"poses1": poses[0], "mask1": masks[0], "poses2": poses[1], "mask2": masks[1]}
    return {**out, "offset": d.offset}, {"sigma_px": sigmas}


def render_batch(spec: Spec, clips: Array, lengths: Array, key: Array, batch_size: int, sharding):
    """(batch dict, info) of ``batch_size`` pairs, pair i drawn from the i-th split of ``key``
    whatever the layout. ``sharding``: a ``NamedSharding`` over a data axis (the rows split over
    it; each device draws and renders its own rows, ``shard_map``) or None."""
    keys = jax.random.split(key, batch_size)

    def rows(keys, clips, lengths):
        draws = jax.vmap(lambda k: draw(k, spec, lengths))(keys)
        return jax.vmap(lambda d: render_pair(spec, clips, lengths, d))(draws)

    if sharding is None:
        return rows(keys, clips, lengths)
    data, whole = sharding.spec, jax.sharding.PartitionSpec()
    if all(t == jax.sharding.AxisType.Explicit for t in sharding.mesh.axis_types):
        keys = jax.sharding.reshard(keys, sharding)  # jax.make_mesh: layouts are types
    return jax.shard_map(rows, mesh=sharding.mesh, in_specs=(data, whole, whole), out_specs=data)(
        keys, clips, lengths
    )


def step_key(seed: int, step: int) -> Array:
    """The render key of training step ``step``: a function of (seed, step) alone, so a resumed
    run renders exactly the batches of an uninterrupted one."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _STREAM), step)


def make_device_renderer(
    pairs: RenderedPairs,
    batch_size: int,
    buckets,
    normalization: str,
    data_sharding=None,
) -> Callable[[Array], dict]:
    """``render(key) -> batch`` of ``batch_size`` pairs drawn as ``pairs`` (a
    ``render.RenderedPairs``: its clips, crop, augmentation and minimum length) draws them, in
    the model's ``normalization``, padded to the bucket of ``buckets`` the numpy batcher picks
    for them. The batch holds the keys the train step takes (poses1, mask1, poses2, mask2,
    offset) and lives on the devices: with ``data_sharding`` (the train step's
    ``NamedSharding(mesh, P('data'))``) split over its data axis, the clips replicated.
    ``render.spec`` is the renderer's ``Spec`` (its bucket, window and ranges)."""
    spec = Spec.of(pairs, bucket_for(pairs.max_length, buckets), normalization)
    packed, lengths = pack_clips(pairs)
    if data_sharding is not None:
        if batch_size % data_sharding.mesh.size:
            raise ValueError(
                f"batch size {batch_size} is not divisible by the {data_sharding.mesh.size} "
                f"devices of the data axis"
            )
        replicated = jax.sharding.NamedSharding(data_sharding.mesh, jax.sharding.PartitionSpec())
        packed, lengths = jax.device_put((packed, lengths), replicated)
        fn = jax.jit(
            lambda c, n, k: render_batch(spec, c, n, k, batch_size, data_sharding)[0],
            in_shardings=(replicated, replicated, replicated),
            out_shardings=data_sharding,
        )
    else:
        packed, lengths = jax.device_put((packed, lengths))
        fn = jax.jit(lambda c, n, k: render_batch(spec, c, n, k, batch_size, None)[0])

    def render(key: Array) -> dict:
        return fn(packed, lengths, key)

    render.spec = spec
    return render
