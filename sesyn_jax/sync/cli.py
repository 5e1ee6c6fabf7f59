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
share), and refined to a fraction of a frame. A recording faster than the model's rate is also
resampled from half a frame later (a 60 fps recording's odd frames for a 30 fps model), and
every pairing of the two phases scores the offsets it aligns exactly: offsets are scored on a
half-frame grid. When both recordings run at twice the model's rate or faster (60 fps for a
30 fps model), the offset found is then refined at twice the model's rate: the same diagonal
rule on the recordings' embeddings at that rate, over 3 of its frames on each side (--json:
"refined_at_fps").

Methods (--method): 'learned' (the model's embeddings), 'speed' (the correlation of the
joints' vertical speeds, no model), 'auto' (the default: the learned offset, unless its
confidence is below 0.5 and the speed method's is 0.5 or more; --json reports both). On the 96
held-out MOCAP-SYN test pairs (bench/sync_accuracy.py) the mean error is 0.47 frames for
'auto', 0.48 for 'learned' and 7.4 for 'speed' at 30 fps; 0.54, 0.55 and 14.2 frames of 60 fps
on the same clips rendered at 60 fps (0.86 for 'learned' without the refinement at 60 fps).

Confidence in [0, 1]. 'learned': the agreement, the share of frames whose own best match within
2 seconds lies within 2 frames of the offset, calibrated on rendered pairs into the share of
answers within 1/30 s of the truth (docs/calibration.md: of the held-out answers at 0.9 or
more, 95 % were; recordings that share no moment mostly score below 0.4). 'speed': the peak
measure, how far the best offset's correlation stands above the highest other peak of the curve
more than 2 frames away, relative to the median (1: one clear peak; 0: a tie elsewhere). Below
0.5 the result comes with a warning. Two cases lower the trust whatever the scores say, and a
warning names them: a recording too short for the learned method (it matches only frames whose
receptive field lies inside the recording, and needs 40 of them: 2.9 s for the shipped model;
'learned' then refuses, saying how long a recording must be, and 'auto' answers with the speed
correlation), and a best offset at the edge of the searched range (--max-offset, or the largest
offset that aligns --min-overlap of the shorter recording), whose confidence is then at most
0.4: the true offset may lie beyond.

With several people in a recording, the main person is followed (a track continues where the
box overlaps or moved little, through gaps of up to 30 frames; the person who moves with the
most detected confidence is followed) and the output says which one; --all-persons matches
every person.

Offsets: "B = A + d" means the moment at time t of A is at time t + d of B, so B started
recording d seconds before A when d > 0. Reported in seconds and in each recording's own
frames.

More than two recordings: every pair is matched and one offset per recording against the first
is fitted to all pairwise offsets by a robust, iteratively reweighted least-squares fit
weighted by confidence (Huber, then Tukey's biweight, so that a wrong pair is ignored); each
pair's residual is reported, and a recording that agrees with none of the others is named in a
warning. Several people (--all-persons): each person of A is matched with each person of B, the
pairs with the best confidence are kept (one-to-one), and their offsets are fused by the
confidence-weighted median, which ignores a wrongly matched person; its confidence is the share
of the pairs' confidence that agrees with it (within 2 frames) times the mean confidence of the
agreeing pairs, so one matched pair keeps its own.

Clock drift: when the recordings share 60 s or more, the offset AND the rate are measured
(``sesyn_jax.sync.drift``: the learned search of 20 s windows along the overlap, then a robust
line), "time t of A = time (1 + r) t + d of B": drift_ppm (r x 1e6) and offset_seconds (d, at
A's start), with its standard error and the share of the windows that lie on the line
(within 1 frame; drift_confidence); the pair's answer is then the line, and its confidence the
learned agreement along it. Shorter recordings, --method speed, --all-persons, a line that
fewer than half of the windows follow and a rate within two standard errors of 0 (not told
from no drift; reported as drift_ppm_measured) give drift_ppm null with a note and one offset,
which --write-synced uses; --no-drift forces one offset. With more than two recordings the
rates enter the robust fit too.

--write-synced OUT (OpenPose folders only): each folder written again into OUT/<its name>,
renumbered so that frame k of every folder shows the same moment (Pose2Sim's pose-sync layout,
at the first recording's frame rate, from the common start to the common end, each camera's
nearest frame through its offset and drift), and OUT/offsets.toml; an existing OUT is refused
(exit 2) unless --overwrite, which replaces only a folder sesyn-sync wrote. When any
recording's confidence is below 0.5 nothing is written and the exit status is 3 (the result
is printed, with the reason); --force-write writes anyway.

Exit status: 0 done; 2 bad input or flag (the message names the file and the field), or an
output that could not be written (--plot, standard output); 3 refused (the message says why:
no person, too few frames, no motion, nothing in common, not enough memory, --write-synced
below 0.5 confidence); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import sys
import tempfile

from sesyn_jax.sync.drift import DriftFit, pair_drift, plot_drift
from sesyn_jax.sync.embedding import CHUNK, embed
from sesyn_jax.sync.errors import BadInput, CannotSync
from sesyn_jax.sync.output import Report, report
from sesyn_jax.sync.persons import match_fused
from sesyn_jax.sync.plot import plot_pair
from sesyn_jax.sync.recordings import (
    MAX_HOURS,
    check_distinct,
    check_fps,
    check_recording,
    check_size,
    frame_rates,
    prepare,
    read_all,
)
from sesyn_jax.sync.search import LOW_CONFIDENCE, METHODS, PairResult, match_pair
from sesyn_jax.sync.synced import check_target, write_synced


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise BadInput(message)

    def _print_message(self, message, file=None):  # --help: a closed or full output is handled
        if message:
            _emit(message.rstrip("\n"), file or sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sesyn-sync",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --js is refused, not taken for --json behind main's back
    )
    p.add_argument("recordings", nargs="+", help="two or more pose recordings")
    p.add_argument(
        "--checkpoint",
        default="default",
        help="train.py workdir, export folder or .pth; 'default' (the default) is the model "
        "shipped in the package, a folder of that name is given as ./default",
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
    p.add_argument(
        "--plot",
        help="PNG of the offset scores of the first pair (and NAME_drift.png: its drift fit)",
    )
    p.add_argument(
        "--no-drift", action="store_true", help="one offset per pair: no clock rate measured"
    )
    p.add_argument(
        "--write-synced",
        metavar="OUT",
        help="write the OpenPose folders renumbered into OUT (Pose2Sim's pose-sync layout)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --write-synced folder (only one sesyn-sync wrote)",
    )
    p.add_argument(
        "--force-write",
        action="store_true",
        help="--write-synced even when a confidence is below 0.5 (refused otherwise, exit 3)",
    )
    p.add_argument("--progress", action="store_true", help="progress bars (default: long inputs)")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv  # until the flags are parsed: a flag error in JSON too
    try:
        try:
            args = build_parser().parse_args(argv)
            as_json = args.json
            out = run(args)
        except BadInput as e:
            return _fail(as_json, "error", str(e), 2)
        except CannotSync as e:
            return _fail(as_json, "refused", str(e), 3)
        except MemoryError:
            return _fail(as_json, "refused", "out of memory; try shorter recordings", 3)
        except KeyboardInterrupt:
            return _fail(as_json, "interrupted", "interrupted (Ctrl-C); nothing was written", 130)
        _emit(out.json() if as_json else out.text(), sys.stdout)
        if out.error:
            if not as_json:
                _emit(f"{'refused' if out.code == 3 else 'error'}: {out.error}", sys.stderr)
            return out.code
        return 0
    except OutputError as e:
        try:
            _emit(f"error: {e}", sys.stderr)
        except OutputError:
            pass
        return 2


class OutputError(OSError):
    """Standard output or error could not be written (closed pipe, full disk)."""


def _emit(text: str, stream) -> None:
    """Write one message and flush it. A closed pipe or a full disk becomes OutputError, and
    the stream is pointed at os.devnull so that nothing fails again when Python exits."""
    try:
        stream.write(text + "\n")
        stream.flush()
    except OSError as e:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())
            os.close(null)
        except (OSError, ValueError):
            pass  # a stream without a file descriptor (captured output)
        what = "standard output" if stream is sys.stdout else "standard error"
        if isinstance(e, BrokenPipeError):
            raise OutputError(f"{what} was closed before the output was written") from None
        raise OutputError(f"cannot write to {what} ({e.strerror or e})") from None


def _fail(as_json: bool, status: str, message: str, code: int) -> int:
    if as_json:
        _emit(json.dumps({"status": status, "reason": message}), sys.stdout)
    elif status == "refused":
        _emit(f"cannot synchronize: {message}", sys.stdout)
    else:
        _emit(f"error: {message}" if status == "error" else message, sys.stderr)
    return code


# ----------------------------------------------------------------------------- the steps


@dataclasses.dataclass
class Settings:
    """The checked flags."""

    names: list[str]
    rates: list[float | None]  # --fps per recording (None: from the file or the model's)
    resolution: tuple[int, int] | None
    max_offset: float | None  # seconds
    min_overlap: float
    method: str
    all_persons: bool
    openpose_model: str
    checkpoint: str
    plot: str | None
    progress: bool
    no_drift: bool
    write_synced: str | None
    overwrite: bool
    force_write: bool


def run(args) -> Report:
    """Everything after parsing, step by step; BadInput and CannotSync carry the failures."""
    settings = check_flags(args)
    from sesyn_jax.hostmem import tune_host_allocator

    tune_host_allocator()  # before JAX starts its CPU threads; see sesyn_jax/hostmem.py
    loaded = load_model(settings)
    recs = read_all(
        settings.names,
        settings.rates,
        settings.resolution,
        settings.all_persons,
        settings.openpose_model,
    )
    rate = (loaded.fps if loaded else None) or 30.0
    notes: list[str] = [n for r in recs for n in r.notes]
    fps = frame_rates(recs, rate, notes)
    check_size(recs, fps, rate, embedding_size(loaded))
    mode = loaded.normalization if loaded else "person"
    prepared = prepare(recs, fps, rate, mode, notes)
    results, fits = match_all(settings, loaded, prepared, rate, notes)
    out = report(
        results,
        fits,
        settings.names,
        recs,
        fps,
        rate,
        settings.method,
        settings.openpose_model,
        notes,
    )
    if settings.plot and results:
        try:
            write_plot(out, results[0], fits[0], settings.plot, rate)
        except OSError as e:
            out.fail(
                f"--plot {settings.plot}: cannot write ({e.strerror or e}); the result is above"
            )
    unsure = [c for c in out.clocks or [] if c.confidence < LOW_CONFIDENCE]
    if settings.write_synced and unsure and not settings.force_write:
        out.fail(
            f"--write-synced {settings.write_synced}: nothing was written: the offset of "
            f"{unsure[-1].recording} has confidence {unsure[-1].confidence:.0%}, below "
            f"{LOW_CONFIDENCE:.0%}; check the result above, and give --force-write to write it "
            f"anyway",
            3,
        )
    elif settings.write_synced:
        try:
            written = write_synced(
                settings.write_synced, settings.names, fps, out.clocks, settings.overwrite
            )
        except OSError as e:
            out.fail(
                f"--write-synced {settings.write_synced}: cannot write ({e.strerror or e}); "
                f"nothing was written; the result is above"
            )
        else:
            out.fields["write_synced"] = written
            out.written.append(
                f"wrote {written['frames']} frames at {written['fps']:g} fps per camera into "
                f"{settings.write_synced} (offsets.toml)"
            )
    return out


def check_flags(args) -> Settings:
    """Every flag checked before any work (BadInput naming the flag)."""
    names = args.recordings
    if len(names) < 2:
        raise BadInput("give at least two recordings")
    check_distinct(names)
    rates = parse_fps(args.fps, len(names))
    for flag, value in (
        ("--plot", args.plot),
        ("--write-synced", args.write_synced),
        ("--resolution", args.resolution),
        ("--checkpoint", args.checkpoint),
    ):
        if value is not None and not value.strip():
            raise BadInput(f"{flag} was given an empty value; give {flag} a name or leave it out")
    res = None
    if args.resolution:
        try:
            res = tuple(int(v) for v in args.resolution.lower().split("x"))
            assert len(res) == 2 and min(res) > 0
        except (ValueError, AssertionError):
            raise BadInput(
                f"--resolution must look like 1920x1080, got {args.resolution!r}"
            ) from None
    longest = MAX_HOURS * 3600
    if args.max_offset is not None and not (0 < args.max_offset <= longest):
        raise BadInput(
            f"--max-offset must be a positive number of seconds up to {longest:g} (the longest "
            f"plausible recording), got {args.max_offset}"
        )
    if not (0 < args.min_overlap < 1):
        raise BadInput(f"--min-overlap must be a share in (0, 1), got {args.min_overlap}")
    if args.plot:
        check_plot_path(args.plot)
    if args.overwrite and not args.write_synced:
        raise BadInput("--overwrite replaces the folder of --write-synced; give --write-synced")
    if args.force_write and not args.write_synced:
        raise BadInput("--force-write applies to --write-synced; give --write-synced")
    if args.write_synced:
        check_target(args.write_synced, names, args.overwrite)
    return Settings(
        names,
        rates,
        res,
        args.max_offset,
        args.min_overlap,
        args.method,
        args.all_persons,
        args.openpose_model,
        args.checkpoint,
        args.plot,
        args.progress,
        args.no_drift,
        args.write_synced,
        args.overwrite,
        args.force_write,
    )


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
        rates.append(check_fps(x, "--fps"))
    if len(rates) == 1:
        return rates * n
    if len(rates) != n:
        raise BadInput(f"--fps gives {len(rates)} rates for {n} recordings; give 1 or {n}")
    return rates


def check_plot_path(path: str) -> None:
    if os.path.isdir(path):
        raise BadInput(f"--plot {path} is a directory; give a .png file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise BadInput(f"--plot {path}: the folder {parent} does not exist")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise BadInput(f"--plot {path}: cannot write in {parent} ({e.strerror or e})") from None


def embedding_size(loaded) -> int:
    """Numbers per frame of the model's embeddings (0 without a model)."""
    return 17 * int(loaded.model().widths[-1]) if loaded else 0


def load_model(settings: Settings):
    """The model (``loading.Loaded``), None for --method speed; BadInput when it cannot load."""
    if settings.method == "speed":
        return None
    from sesyn_jax import checkpoint, convert, loading

    try:
        return loading.load_model(settings.checkpoint)
    except (checkpoint.CheckpointError, convert.ConversionError) as e:
        raise BadInput(str(e)) from None


def match_all(settings: Settings, loaded, prepared, rate: float, notes: list[str]):
    """Every pair of recordings matched (first against second, ...) and its clock drift
    (``drift.pair_drift``): the pair results and their drift fits; with more than two, a pair
    that cannot be matched is noted and left out of the fit."""
    names = settings.names
    long_input = settings.progress or max(p.pixels.shape[-3] for p in prepared) > 5 * CHUNK
    model = loaded.model() if loaded else None

    def embed_fn(x):
        return embed(model, loaded.variables, x, progress=long_input)

    def embed_or_none(x):  # a recording's half-frame phase or fine-rate poses, where it has them
        return None if x is None else embed_fn(x)

    search = dict(
        method=settings.method,
        inner_radius=loaded.inner_radius if loaded else 0,
        max_offset=max_offset_frames(settings.max_offset, rate, notes),
        rate=rate,
        min_overlap=settings.min_overlap,
    )
    if not settings.all_persons:
        for p, n in zip(prepared, names):
            check_recording(p.pixels, n, rate)
        feats = [embed_fn(p.normalized) for p in prepared] if loaded else None
        halves = [embed_or_none(p.half) for p in prepared] if loaded else None
        fines = [embed_or_none(p.fine) for p in prepared] if loaded else None

    def pair_result(i: int, j: int) -> PairResult:
        a, b = prepared[i].normalized, prepared[j].normalized
        pair = (names[i], names[j])
        if settings.all_persons:
            return match_fused(embed_fn if loaded else None, a, b, pair, **search)
        half = (halves[i], halves[j]) if feats else None
        both_fine = feats and fines[i] is not None and fines[j] is not None
        return match_pair(
            (feats[i], feats[j]) if feats else None,
            (a, b),
            pair,
            half=half,
            fine=(fines[i], fines[j]) if both_fine else None,
            **search,
        )

    def with_drift(i: int, j: int, pair: PairResult) -> tuple[PairResult, DriftFit]:
        if settings.all_persons or not feats:
            why = "--all-persons" if settings.all_persons else "--method speed"
            note = f"drift not estimated: it is measured on the learned embeddings, not with {why}"
            return pair, DriftFit(pair.offset, rate, None, note=note)
        return pair_drift(pair, feats[i], feats[j], search["inner_radius"], rate, settings.no_drift)

    results, fits = [], []
    for i, j in itertools.combinations(range(len(names)), 2):
        try:
            pair, fit = with_drift(i, j, pair_result(i, j))
        except CannotSync as e:
            if len(names) == 2:
                raise
            notes.append(f"{names[i]} ~ {names[j]}: {e}")
            continue
        results.append(pair)
        fits.append(fit)
    return results, fits


def max_offset_frames(seconds: float | None, rate: float, notes: list[str]) -> int | None:
    """--max-offset in whole model frames (rounded up, so the range asked for is searched),
    with a note naming the user's value when the rounding changes it."""
    if not seconds:
        return None
    frames = int(math.ceil(seconds * rate - 1e-9))
    if abs(frames - seconds * rate) > 1e-6:
        notes.append(
            f"--max-offset {seconds:g} s rounded up to {frames} frame{'s' * (frames != 1)} of the "
            f"model's {rate:g} fps ({frames / rate:.4g} s)"
        )
    return frames


def write_plot(out: Report, result: PairResult, fit: DriftFit, path: str, rate: float) -> None:
    """The first pair's scores at ``path`` and, when its windows were searched, their offsets
    and the fitted line at ``drift_plot_path(path)``."""
    plot_pair(result, path, rate)
    out.fields["plot"] = path
    out.written.append(f"plot: {path}")
    if fit.windows is not None:
        second = drift_plot_path(path)
        plot_drift(fit, second, result.a, result.b)
        out.fields["plot_drift"] = second
        out.written.append(f"drift plot: {second}")


def drift_plot_path(path: str) -> str:
    """sync.png -> sync_drift.png (beside it)."""
    stem, ext = os.path.splitext(path)
    return f"{stem}_drift{ext or '.png'}"


if __name__ == "__main__":
    sys.exit(main())
