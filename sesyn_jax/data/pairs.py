"""Batches of padded pairs for training and evaluation, and test-time corruptions.

A batch is a dict of numpy arrays, both views padded at the end to one bucket length T:
  poses1, poses2 (B, T, 17, 3) float32; mask1, mask2 (B, T) bool (True on real frames);
  offset (B,) int64; index (B,) int64 (position in the dataset, -1 for filler rows);
  valid (B,) bool (False for filler rows that complete the last batch of a bucket in eval).
Lengths are rounded up to a few bucket lengths so that jit compiles a handful of shapes.
The order of an epoch depends only on (seed, epoch): a resumed run sees the same batches.
A dataset with a ``pair(i, rng)`` method (``mocap_syn.FreshCrops``, ``render.RenderedPairs``)
is cropped (or rendered) anew in every training epoch, with a generator seeded by
(seed, epoch, i), so resumed runs see the same crops. Pairs hold the 'published' normalization;
``normalization`` names the model's input normalization each view is brought to in a batch
(``model.normalization``).
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, Sequence

import numpy as np

from sesyn_jax.data import normalization as norm_lib
from sesyn_jax.data.syn_json import Pair


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    for b in sorted(buckets):
        if length <= b:
            return b
    raise ValueError(
        f"a sequence of {length} frames is longer than the largest bucket "
        f"{max(buckets)}; add a larger bucket to data.buckets"
    )


def pad_to(x: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros((length,) + x.shape[1:], np.float32)
    out[: len(x)] = x
    mask = np.zeros(length, bool)
    mask[: len(x)] = True
    return out, mask


class PairBatcher:
    """Epochs of bucketed, padded batches of pairs.

    Training (``train=True``): shuffled, batches never mix buckets, incomplete batches dropped.
    Evaluation: dataset order within each bucket, the last batch of a bucket filled with
    ``valid=False`` rows. ``process_index`` / ``process_count``: each process of a multi-host
    run gets its own contiguous slice of every global batch.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        batch_size: int,
        buckets: Sequence[int],
        seed: int = 0,
        train: bool = True,
        process_index: int = 0,
        process_count: int = 1,
        normalization: str = "published",
    ):
        norm_lib.check_mode(normalization)
        self.normalization = normalization
        if not pairs:
            raise ValueError("the dataset has no pairs")
        if batch_size % process_count:
            raise ValueError(
                f"batch size {batch_size} is not divisible by the {process_count} processes"
            )
        # a dataset that crops its pairs anew every epoch (training only)
        self.fresh = pairs if (train and hasattr(pairs, "pair")) else None
        self.pairs = [pairs[i] for i in range(len(pairs))]
        self.batch_size = batch_size
        self.seed = seed
        self.train = train
        self.process_index = process_index
        self.process_count = process_count
        self.bucket_of = np.array([bucket_for(self._max_length(p), buckets) for p in self.pairs])
        if train and self.steps_per_epoch() == 0:
            raise ValueError(
                f"no bucket holds a full batch of {batch_size} pairs "
                f"({len(self.pairs)} pairs); lower the batch size"
            )

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The pair indices of each batch of ``epoch``, in the order they are served: pairs
        grouped by bucket, each batch batch_size indices long; in evaluation (``train=False``)
        in dataset order, the last batch of a bucket padded with -1."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.pairs)) if self.train else np.arange(len(self.pairs))
        batches = []
        for b in sorted(set(self.bucket_of.tolist())):
            idx = order[self.bucket_of[order] == b]
            full = len(idx) // self.batch_size * self.batch_size
            batches += [idx[i : i + self.batch_size] for i in range(0, full, self.batch_size)]
            if not self.train and full < len(idx):
                rest = idx[full:]
                batches.append(np.concatenate([rest, -np.ones(self.batch_size - len(rest), int)]))
        if self.train:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _max_length(self, p: Pair) -> int:
        if self.fresh is not None:
            return self.fresh.max_length
        return max(len(p.view1), len(p.view2))

    def steps_per_epoch(self) -> int:
        return len(self.batch_indices(0))

    def get_pair(self, i: int, epoch: int) -> Pair:
        if self.fresh is None:
            return self.pairs[i]
        return self.fresh.pair(i, np.random.default_rng([self.seed, epoch, i]))

    def make_batch(self, idx: np.ndarray, epoch: int = 0) -> dict:
        lo = self.process_index * len(idx) // self.process_count
        hi = (self.process_index + 1) * len(idx) // self.process_count
        idx = idx[lo:hi]
        real = idx[idx >= 0]
        pairs = {int(i): self.get_pair(int(i), epoch) for i in (real if len(real) else [0])}
        length = max(self._max_length(p) for p in pairs.values())
        length = bucket_for(length, sorted(set(self.bucket_of.tolist())))
        out = {k: [] for k in ("poses1", "mask1", "poses2", "mask2", "offset", "index", "valid")}
        for i in idx:
            p = pairs[int(i) if i >= 0 else next(iter(pairs))]
            r1, r2 = p.resolutions
            a, ma = pad_to(norm_lib.renormalize(p.view1, self.normalization, r1), length)
            b, mb = pad_to(norm_lib.renormalize(p.view2, self.normalization, r2), length)
            for k, v in (
                ("poses1", a),
                ("mask1", ma),
                ("poses2", b),
                ("mask2", mb),
                ("offset", p.offset),
                ("index", i),
                ("valid", i >= 0),
            ):
                out[k].append(v)
        return {k: np.asarray(v) for k, v in out.items()}

    def epoch(self, epoch: int, skip: int = 0, prefetch: int = 2) -> Iterator[dict]:
        """The batches of one epoch, from batch ``skip`` on, prepared in a background thread
        ``prefetch`` batches ahead (0: on the calling thread)."""
        batches = (self.make_batch(b, epoch) for b in self.batch_indices(epoch)[skip:])
        return prefetch_in_thread(batches, prefetch) if prefetch > 0 else batches


def prefetch_in_thread(items: Iterator, size: int) -> Iterator:
    """``items`` produced by a background thread, at most ``size`` ahead of the consumer, in
    their order; an exception in the thread is raised in the consumer. Closing the returned
    generator stops the thread and closes ``items`` there."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # surfaced in the consumer
            q.put(e)
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()

    def consume():
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)

    return consume()


# ----------------------------------------------------------------------------- corruptions


def drop_frames(poses: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Delete round(fraction * T) random frames (the paper's Table 5: the frame rate is no
    longer constant afterwards)."""
    t = len(poses)
    n = int(round(fraction * t))
    if n <= 0:
        return poses
    keep = np.sort(rng.choice(t, t - n, replace=False))
    return poses[keep]


def add_pixel_noise(
    poses: np.ndarray, sigma_px: float, resolution: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """Gaussian noise of sigma_px pixels on x and y of every detected joint of normalized
    poses (the paper's Table 6); missing joints (score 0) stay 0."""
    if sigma_px <= 0:
        return poses
    out = poses.copy()
    w, h = resolution
    noise = rng.normal(0.0, sigma_px, poses.shape[:-1] + (2,)) / np.array([w, h])
    seen = poses[..., 2] > 0
    out[..., :2] = np.where(seen[..., None], out[..., :2] + noise, 0.0)
    return out.astype(np.float32)


def corrupt_pairs(
    pairs: Sequence[Pair], drop_fraction: float = 0.0, noise_px: float = 0.0, seed: int = 0
) -> list[Pair]:
    """Test-time corruption of both views of every pair, seeded per pair."""
    out = []
    for i, p in enumerate(pairs):
        rng = np.random.default_rng([seed, i])
        v1 = add_pixel_noise(drop_frames(p.view1, drop_fraction, rng), noise_px, p.resolution, rng)
        v2 = add_pixel_noise(drop_frames(p.view2, drop_fraction, rng), noise_px, p.resolution, rng)
        out.append(Pair(p.name, v1, v2, p.offset, p.resolution))
    return out
