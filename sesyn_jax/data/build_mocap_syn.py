"""Write MOCAP-SYN in the SYN JSON layout.

  python -m sesyn_jax.data.build_mocap_syn --mocap-dir ../shared/data/mocap --out DIR \
      [--frames 120] [--seed 0] [--protocol independent|paper] [--write-embedded]

DIR/train/*.json, DIR/test/*.json (view files named ..._C001.json / ..._C002.json, paired by
the NTU-SYN rule), DIR/manifest.json with every parameter, seed, clip and pair. Without
--mocap-dir the embedded clips are used. --write-embedded (re)writes the package's embedded
clips from --mocap-dir.

--protocol independent (default): each view also loses an independent random number of frames
at its end, so that neither the lengths nor the ends of the views say anything about the
offset. --protocol paper: only the starts are cut, as NTU-SYN and CMU-SYN; both views end at
the same moment and the offset equals len(view 2) - len(view 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile

from sesyn_jax.data import mocap, mocap_syn
from sesyn_jax.data.syn_json import write_syn_view


def write_dataset(
    records, summary, cfg: mocap_syn.BuildConfig, out: str, clips_source: str, clips
) -> None:
    """Write into a temporary folder beside ``out``, then rename it into place."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(out))
    try:
        for split in ("train", "test"):
            os.makedirs(os.path.join(tmp, split))
        for r in records:
            for view, cat in ((1, r.category_id1), (2, r.category_id2)):
                path = os.path.join(tmp, r.split, f"{r.name}_C00{view}.json")
                write_syn_view(path, r.view_frames(view), cat, (cfg.width, cfg.height), r.name)
        manifest = {
            "dataset": "MOCAP-SYN",
            "clips_source": clips_source,
            "config": dataclasses.asdict(cfg),
            "summary": summary,
            "clips": [
                {"name": c.name, "frames_30fps": int(len(c.joints)), "licence": c.licence}
                for c in clips
            ],
            "pairs": [
                {
                    "name": r.name,
                    "split": r.split,
                    "clip": r.clip,
                    "category_id": [r.category_id1, r.category_id2],
                    "length": [r.length1, r.length2],
                    "offset": r.offset,
                    **r.meta,
                }
                for r in records
            ],
        }
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sesyn_jax.data.build_mocap_syn",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mocap-dir", help="../shared/data/mocap (default: embedded clips)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument(
        "--frames", type=int, default=120, help="window length (120 NTU-like, 480 CMU-like)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--camera-pairs", type=int, default=2)
    parser.add_argument("--drop-frame-prob", type=float, default=0.0)
    parser.add_argument(
        "--protocol",
        choices=mocap_syn.PROTOCOLS,
        default="independent",
        help="independent: start and end of each view cut independently "
        "(default); paper: only the starts cut, as NTU-SYN",
    )
    parser.add_argument(
        "--write-embedded",
        action="store_true",
        help="rewrite the package's embedded clips from --mocap-dir",
    )
    args = parser.parse_args(argv)
    if not args.out and not args.write_embedded:
        parser.error("give --out DIR (and/or --write-embedded)")
    try:
        if args.mocap_dir:
            clips = mocap.load_all_clips(args.mocap_dir)
            source = os.path.abspath(args.mocap_dir)
        else:
            clips = mocap_syn.load_embedded()
            source = "embedded"
    except (mocap.MocapError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.write_embedded:
        if not args.mocap_dir:
            parser.error("--write-embedded needs --mocap-dir")
        mocap_syn.save_embedded(clips)
        print(f"wrote {mocap_syn.EMBEDDED} ({len(clips)} clips)")
        clips = mocap_syn.load_embedded()  # build from exactly what is shipped
        source = "embedded"
    if args.out:
        cfg = mocap_syn.BuildConfig(
            frames=args.frames,
            seed=args.seed,
            camera_pairs=args.camera_pairs,
            drop_frame_prob=args.drop_frame_prob,
            protocol=args.protocol,
        )
        records, summary = mocap_syn.build_pairs(clips, cfg)
        write_dataset(records, summary, cfg, args.out, source, clips)
        for split in ("train", "test"):
            s = summary[split]
            print(f"{split}: {len(s['clips'])} clips, {s['windows']} windows, {s['pairs']} pairs")
        if summary["skipped"]:
            print(f"skipped (shorter than {cfg.window} frames): {sorted(summary['skipped'])}")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
