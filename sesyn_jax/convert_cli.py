"""Convert between PyTorch checkpoints and sesyn-jax inference folders.

  python -m sesyn_jax.convert_cli torch2flax IN.pth OUT_DIR   # -> a folder evaluate.py and
                                                              #    sesyn-sync load
  python -m sesyn_jax.convert_cli flax2torch CKPT OUT.pth     # -> checkpoint["model"] for the
                                                              #    published code

CKPT: an inference folder or a train.py workdir. Exit status 2, with the reason, on a missing,
unreadable or mismatched checkpoint or a model the published network cannot run.
"""

from __future__ import annotations

import argparse
import sys

from sesyn_jax import checkpoint, convert
from sesyn_jax.io import atomic_write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sesyn_jax.convert_cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    t2f = sub.add_parser("torch2flax", help="a .pth checkpoint -> an inference checkpoint folder")
    t2f.add_argument("src")
    t2f.add_argument("dst")
    f2t = sub.add_parser("flax2torch", help="an inference or training checkpoint -> a .pth file")
    f2t.add_argument("src")
    f2t.add_argument("dst")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "torch2flax":
            loaded = convert.load_torch_inference(args.src)
            checkpoint.save_inference(
                args.dst,
                loaded.variables,
                loaded.model_config,
                extras=loaded.extras,
                source=f"converted from {args.src}",
            )
            print(f"wrote {args.dst} (model {loaded.model_config})")
        else:
            torch = convert.require_torch()
            loaded = checkpoint.load_inference(args.src)
            state = convert.flax_to_torch(loaded.variables, loaded.extras, loaded.model_config)
            atomic_write(args.dst, lambda f: torch.save({"model": state}, f), binary=True)
            print(f"wrote {args.dst} ({len(state)} tensors; load with checkpoint['model'])")
    except (convert.ConversionError, checkpoint.CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
