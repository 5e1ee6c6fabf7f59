"""evaluate.py's report: Table 1 with the baselines against plain numpy, the search settings, and
the evaluation path train.py, evaluate.py and the ablation runner share."""

import json
import os

import numpy as np
import pytest

from sesyn_jax import checkpoint
from sesyn_jax.data.splits import load_pairs


def np_simple_offsets(pairs):
    """Simple baseline in plain numpy: flattened poses, row argmax of -||a - b||^2, floor of
    the numpy median of (argmax - index)."""
    out = []
    for p in pairs:
        a = p.view1.reshape(len(p.view1), -1).astype(np.float64)
        b = p.view2.reshape(len(p.view2), -1).astype(np.float64)
        d = ((a[:, None] - b[None]) ** 2).sum(-1)
        out.append(int(np.floor(np.median(np.argmin(d, 1) - np.arange(len(a))))))
    return np.array(out)


def test_evaluate_report(tmp_path, random_export):
    from configs import quickstart
    from sesyn_jax import metrics, report

    cfg = quickstart.get_config()
    loaded = checkpoint.load_inference(random_export)
    res = report.evaluate_checkpoint(
        cfg,
        loaded,
        random_export,
        out=str(tmp_path / "eval"),
        drop_rates=(0, 10),
        noise_px=(0, 9),
        progress=False,
    )
    pairs = load_pairs(cfg, "test")
    true = np.array([p.offset for p in pairs])
    want = metrics.sync_metrics(np_simple_offsets(pairs), true)
    assert res["table1"]["Simple"] == pytest.approx(want)
    assert list(res["table1"]) == ["Zero", "Length", "Speed", "Simple", "SSM", "SeSyn"]
    assert res["table1"]["Zero"]["frame_error"] == pytest.approx(np.abs(true).mean())
    lengths = np.array([len(p.view2) - len(p.view1) for p in pairs])
    assert res["predictions"]["Length"] == lengths.tolist()
    assert res["drop_frames"]["0%"] == res["table1"]["SeSyn"]
    on_disk = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert on_disk["table1"]["SSM"]["frame_error"] == res["table1"]["SSM"]["frame_error"]
    assert "| SeSyn |" in (tmp_path / "eval" / "results.md").read_text()
    assert os.path.getsize(tmp_path / "eval" / "error_vs_offset.png") > 10_000


def np_simple_diagonal_offsets(pairs, max_offset, need):
    """Simple baseline under the diagonal rule in plain numpy: per offset the mean of
    -||a_m - b_(m+d)||^2 over the aligned frames, best offset with enough of them."""
    out = []
    for p in pairs:
        a = p.view1.reshape(len(p.view1), -1).astype(np.float64)
        b = p.view2.reshape(len(p.view2), -1).astype(np.float64)
        best, arg = -np.inf, None
        for d in range(-max_offset, max_offset + 1):
            m = np.arange(max(0, -d), min(len(a), len(b) - d))
            if len(m) >= need:
                s = -np.mean(np.sum((a[m] - b[m + d]) ** 2, 1))
                if s > best:
                    best, arg = s, d
        out.append(arg)
    return np.array(out)


def test_evaluate_with_the_diagonal_rule(tmp_path, random_export):
    from configs import quickstart
    from sesyn_jax import report

    cfg = quickstart.get_config()
    cfg.eval.rule, cfg.eval.max_offset, cfg.eval.min_overlap = "diagonal", 30, 40
    pairs = load_pairs(cfg, "test")[:12]
    res = report.evaluate_checkpoint(
        cfg,
        checkpoint.load_inference(random_export),
        random_export,
        out=str(tmp_path / "eval"),
        sweeps=False,
        progress=False,
        pairs=pairs,
    )
    assert res["search"] == {"rule": "diagonal", "max_offset": 30, "min_overlap": 40}
    assert res["predictions"]["Simple"] == np_simple_diagonal_offsets(pairs, 30, 40).tolist()
    assert all(abs(p) <= 30 for name in ("SeSyn", "SSM", "Speed") for p in res["predictions"][name])


def test_evaluation_takes_sequences_longer_than_every_bucket(random_export, motion):
    """train.py, evaluate.py and the ablation runner share this path: a test sequence longer
    than the largest bucket gets a bucket of its own instead of an error."""
    from ml_collections import ConfigDict

    from sesyn_jax import evaluation
    from sesyn_jax.data.normalization import normalize
    from sesyn_jax.data.syn_json import Pair

    x = normalize(motion, "published", (1920, 1080))
    pairs = [Pair("p", x[10:80], x[17:90], -7), Pair("q", x[:50], x[5:60], -5)]
    loaded = checkpoint.load_inference(random_export)
    eval_cfg = ConfigDict({"batch_size": 2, "rule": "median", "max_offset": 0, "min_overlap": 0.5})
    model, variables = loaded.model(), loaded.variables
    short, m_short = evaluation.Evaluator(model, eval_cfg, (32,), 30)(variables, pairs)
    long, _ = evaluation.Evaluator(model, eval_cfg, (128,), 30)(variables, pairs)
    np.testing.assert_array_equal(short, long)
    assert short.tolist() == [-7, -5] and m_short["frame_error"] == 0.0
