"""Ablations: train every variant with every seed on the same data, evaluate each on the
same test pairs, and tabulate mean and standard deviation over seeds (like the paper's Table 2).

A variant is a loss variant (``sesyn_jax.variants``: the config with other loss terms) or a
recipe that the config file defines beside ``get_config`` as ``RECIPES``: recipe name ->
{dotted config key: value}, e.g. {'cycle': {'loss.weights': {...}, 'data.render': False}}.

  python -m sesyn_jax.ablate --config configs/ablation_cpu.py \
      --variants iden,iden+devi,iden+devi+intv,tcc_cls,tcc_reg_var --seeds 0,1,2 \
      --workdir runs/ablation

Every field of the config can be overridden for all variants, as in train.py
(``--config.train.epochs=3``). Each run lives in WORKDIR/<variant>/seed<k> (a train.py
workdir); an interrupted ablation is resumed by running the same command: finished runs are
skipped, an interrupted run resumes from its last checkpoint. Writes WORKDIR/ablation.md,
ablation.json and ablation.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

import numpy as np

from sesyn_jax import variants
from sesyn_jax.io import atomic_write

COLUMNS = (
    ("frame_error", "Frm.err", 1.0, 2),
    ("acc@1", "Acc@1", 100.0, 1),
    ("acc@5", "Acc@5", 100.0, 1),
    ("acc@10", "Acc@10", 100.0, 1),
    ("rel_error", "Rel.err", 1.0, 3),
    ("racc@10", "rAcc@10", 100.0, 1),
)


def load_recipes(path: str) -> dict:
    """The ``RECIPES`` a config file defines beside ``get_config`` ({} when it has none); the
    config itself comes from the --config flag, which loads the same file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such config file")
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if root not in sys.path:
        sys.path.insert(0, root)  # so that 'from configs import default' works
    spec = importlib.util.spec_from_file_location("_ablation_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(getattr(module, "RECIPES", {}))


def variant_config(base, variant: str, seed: int, recipes: dict | None = None):
    cfg = base.copy_and_resolve_references()
    recipes = recipes or {}
    if variant in recipes:
        for key, value in recipes[variant].items():
            *path, leaf = key.split(".")
            node = cfg
            for part in path:
                node = node[part]
            if leaf not in node:
                raise ValueError(f"recipe {variant!r}: the config has no field {key!r}")
            node[leaf] = value
        cfg.seed = seed
        return cfg
    mu1 = float(base.loss.weights.get("deviation", 0.5))
    mu2 = float(base.loss.weights.get("interval", 0.035))
    weights, options = variants.resolve(variant, mu1, mu2)
    cfg.loss.weights = weights
    cfg.loss.options = options
    cfg.seed = seed
    return cfg


def run_one(cfg, workdir: str) -> dict:
    """Train (or resume, or skip when finished) and evaluate one variant and seed."""
    from sesyn_jax import checkpoint, evaluation
    from sesyn_jax.train.loop import train_and_evaluate
    from sesyn_jax.data.splits import load_pairs

    result_path = os.path.join(workdir, "result.json")
    if os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)
    if not os.path.exists(os.path.join(workdir, "export", "model.json")):
        res = train_and_evaluate(cfg, workdir, progress=False)
        if res["status"] == "non-finite":  # a diverged variant is a result, not a crash
            out = diverged_result(res["step"])
            atomic_write(result_path, lambda f: json.dump(out, f))
            return out
        if res["status"] != "finished":
            raise RuntimeError(f"{workdir}: training ended with status {res['status']}")
    loaded = checkpoint.load_inference(workdir)
    pairs = load_pairs(cfg, "test")
    out = evaluation.evaluator_for(loaded, cfg)(loaded.variables, pairs)[1]
    atomic_write(result_path, lambda f: json.dump(out, f))
    return out


def diverged_result(step: int) -> dict:
    """The record of a run whose loss became non-finite: no metrics."""
    return {"diverged": True, "step": int(step), **{k: float("nan") for k, *_ in COLUMNS}}


def summarize(results: dict[str, list[dict]]) -> dict:
    """Per variant and metric: mean and standard deviation over the runs that did not diverge,
    every run's value (nan when diverged) and the number of diverged runs."""
    table = {}
    for v, runs in results.items():
        ok = [r for r in runs if not r.get("diverged")]
        table[v] = {
            k: {
                "mean": float(np.mean([r[k] for r in ok])) if ok else float("nan"),
                "std": float(np.std([r[k] for r in ok], ddof=1)) if len(ok) > 1 else 0.0,
                "runs": [r[k] for r in runs],
            }
            for k, *_ in COLUMNS
        }
        table[v]["diverged"] = len(runs) - len(ok)
    return table


def markdown(table: dict, seeds) -> str:
    head = "| Variant | " + " | ".join(t for _, t, _, _ in COLUMNS) + " |"
    lines = [
        "Mean ± standard deviation over the finished seeds of "
        + str(list(seeds))
        + " (runs: finished, of which diverged; diverged runs are left out of the means).",
        "",
        head + " runs | Frm.err per seed |",
        "|" + "---|" * (len(COLUMNS) + 3),
    ]
    for v, row in table.items():
        cells = [
            f"{row[k]['mean'] * s:.{d}f} ± {row[k]['std'] * s:.{d}f}" for k, _, s, d in COLUMNS
        ]
        n = len(row["frame_error"]["runs"])
        per = ", ".join(
            "diverged" if np.isnan(x) else f"{x:.2f}" for x in row["frame_error"]["runs"]
        )
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {n} ({row['diverged']}) | {per} |")
    return "\n".join(lines)


def plot(table: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 4))
    for i, v in enumerate(names):
        runs = [x for x in table[v]["frame_error"]["runs"] if not np.isnan(x)]
        ax.scatter([i] * len(runs), runs, color="gray", s=12, zorder=3)
        ax.errorbar(
            i,
            table[v]["frame_error"]["mean"],
            yerr=table[v]["frame_error"]["std"],
            fmt="o",
            color="C0",
            capsize=4,
            zorder=4,
        )
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("frame error (frames)")
    ax.set_title("Frame error per loss variant (mean ± std over seeds; dots: seeds)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), binary=True)
    plt.close(fig)


def parse_flags(argv: list[str]):
    """The runner's absl flags, parsed from ``argv`` (without the program name) into a flag set
    of their own: --config FILE with --config.a.b=value overrides (as train.py's; they apply to
    every variant), --variants, --seeds, --workdir. A bad flag exits with status 2."""
    from absl import flags
    from ml_collections import config_flags

    from sesyn_jax.cli import parse_flags_or_exit

    argv = ["python -m sesyn_jax.ablate"] + list(argv)
    fv = flags.FlagValues()
    # config_flags learns the --config.* overrides from the argv it is given at definition
    config_flags.DEFINE_config_file(
        "config", None, "a configs/*.py file", flag_values=fv, lock_config=True, sys_argv=argv
    )
    flags.DEFINE_list("variants", None, "loss variants or recipes", flag_values=fv)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "training seeds", flag_values=fv)
    flags.DEFINE_string("workdir", None, "folder of the runs and the tables", flag_values=fv)
    parse_flags_or_exit(argv, fv)
    return fv


def main(argv=None) -> int:
    """``argv``: the arguments after the program name (default: sys.argv[1:])."""
    from ml_collections import config_flags

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    FLAGS = parse_flags(argv)
    missing = [f"--{k}" for k in ("config", "variants", "workdir") if not FLAGS[k].value]
    if missing:
        print(f"error: {', '.join(missing)} must be given", file=sys.stderr)
        return 2
    args = argparse.Namespace(
        config=config_flags.get_config_filename(FLAGS["config"]), workdir=FLAGS.workdir
    )
    from sesyn_jax.hostmem import tune_host_allocator

    tune_host_allocator()  # before JAX starts its CPU threads; see sesyn_jax/hostmem.py
    names = [v.strip() for v in FLAGS.variants if v.strip()]
    try:
        seeds = [int(s) for s in FLAGS.seeds]
        recipes = load_recipes(args.config)
        base = FLAGS.config  # the file's config with the --config.* overrides applied
        # seed-major order: a partly finished ablation already covers every variant
        configs = {(v, s): variant_config(base, v, s, recipes) for s in seeds for v in names}
        from sesyn_jax import config_checks

        for cfg in configs.values():
            config_checks.check_config(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results: dict[str, list[dict]] = {v: [] for v in names}
    for (v, s), cfg in configs.items():
        wd = os.path.join(args.workdir, v, f"seed{s}")
        print(f"[{v} seed {s}] {wd}", flush=True)
        r = run_one(cfg, wd)
        print(f"[{v} seed {s}] frame error {r['frame_error']:.2f}", flush=True)
        results[v].append(r)
        md = write_table(
            results, seeds, args, done=sum(map(len, results.values())), total=len(configs)
        )
    print(md)
    return 0


def write_table(results: dict, seeds, args, done: int, total: int) -> str:
    """Write the table of the runs finished so far (rewritten after every run)."""

    table = summarize({v: r for v, r in results.items() if r})
    md = markdown(table, seeds)
    if done < total:
        md = f"PARTIAL: {done} of {total} runs finished.\n\n" + md
    atomic_write(os.path.join(args.workdir, "ablation.md"), lambda f: f.write(md + "\n"))
    atomic_write(
        os.path.join(args.workdir, "ablation.json"),
        lambda f: json.dump(
            {
                "seeds": seeds,
                "config": args.config,
                "finished_runs": done,
                "total_runs": total,
                "table": table,
            },
            f,
            indent=1,
        ),
    )
    plot(table, os.path.join(args.workdir, "ablation.png"))
    return md


if __name__ == "__main__":
    sys.exit(main())
