"""Convert between PyTorch checkpoints and sesyn-jax inference folders.

  python -m sesyn_jax.convert_cli torch2flax IN.pth OUT_DIR   # -> a folder evaluate.py and
                                                              #    sesyn-sync load
  python -m sesyn_jax.convert_cli flax2torch CKPT OUT.pth     # -> checkpoint["model"] for the
                                                              #    published code

CKPT: an inference folder, a train.py workdir, or the bare word default (the model shipped in
the package; a folder called default is given as ./default). The shipped model pads its
temporal convolutions at the edges, which the published PyTorch network cannot do: it does not
export. Exit status 2, with one line that names the file, on a missing, unreadable or
mismatched checkpoint, a model the published network cannot run, or an output that cannot be
written.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from sesyn_jax import checkpoint, convert, loading
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
        else:
            src = loading.DEFAULT_MODEL if loading.is_shipped(args.src) else args.src
            if os.path.isfile(src):
                raise convert.ConversionError(
                    f"{src}: a file; flax2torch takes an export folder or a train.py workdir "
                    f"(a .pth converts the other way, with torch2flax)"
                )
            loaded = checkpoint.load_inference(src)
            try:
                state = convert.flax_to_torch(loaded.variables, loaded.extras, loaded.model_config)
            except convert.ConversionError as e:
                raise convert.ConversionError(f"{args.src}: {e}") from None
    except (convert.ConversionError, checkpoint.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "torch2flax":
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
            if os.path.isdir(args.dst):
                raise IsADirectoryError(errno.EISDIR, "a folder; give a .pth file name")
            atomic_write(args.dst, lambda f: torch.save({"model": state}, f), binary=True)
            print(f"wrote {args.dst} ({len(state)} tensors; load with checkpoint['model'])")
    except OSError as e:
        print(f"error: {args.dst}: cannot be written ({_why(args.dst, e)})", file=sys.stderr)
        return 2
    return 0


def _why(path: str, e: OSError) -> str:
    """The reason an output cannot be written; a file where a folder must be is named."""
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if os.path.isfile(parent):
        return f"{parent} is a file, not a folder"
    return e.strerror or str(e)


if __name__ == "__main__":
    sys.exit(main())
