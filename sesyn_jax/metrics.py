"""Synchronization metrics of the paper (Section 4.2) as the published test script computes them.

Per pair e = |predicted - true| in frames. Frm.err = mean e; Acc@k = share of pairs with e <= k;
Abs.err = Frm.err / fps (seconds); Rel.err = sum e / sum |true|; rAcc@p = share, among pairs with
true != 0, of e / |true| <= p / 100. All values are fractions; tables print percentages.
"""

from __future__ import annotations

import numpy as np

METRIC_KEYS = (
    "frame_error",
    "acc@1",
    "acc@5",
    "acc@10",
    "abs_error",
    "rel_error",
    "racc@10",
    "racc@30",
    "racc@50",
)

# (key, column title, scale, decimals) of the paper's Table 1.
_TABLE_COLUMNS = (
    ("frame_error", "Frm.err", 1.0, 2),
    ("acc@1", "Acc@1", 100.0, 2),
    ("acc@5", "Acc@5", 100.0, 2),
    ("acc@10", "Acc@10", 100.0, 2),
    ("abs_error", "Abs.err (s)", 1.0, 4),
    ("rel_error", "Rel.err", 1.0, 2),
    ("racc@10", "rAcc@10", 100.0, 2),
    ("racc@30", "rAcc@30", 100.0, 2),
    ("racc@50", "rAcc@50", 100.0, 2),
)


def sync_metrics(pred, true, fps: float = 30.0) -> dict[str, float]:
    """Metrics of predicted against true offsets (frames), as fractions.

    rel_error is nan when every true offset is 0; the rAcc terms are nan when no pair has a
    non-zero true offset (the published script would divide by zero there).
    """
    pred = np.asarray(pred, np.float64).reshape(-1)
    true = np.asarray(true, np.float64).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"pred has {pred.size} offsets but true has {true.size}")
    if pred.size == 0:
        raise ValueError("no pairs to score")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    err = np.abs(pred - true)
    gt = np.abs(true)
    out = {
        "frame_error": float(err.mean()),
        "acc@1": float(np.mean(err <= 1)),
        "acc@5": float(np.mean(err <= 5)),
        "acc@10": float(np.mean(err <= 10)),
        "abs_error": float(err.mean() / fps),
        "rel_error": float(err.sum() / gt.sum()) if gt.sum() > 0 else float("nan"),
    }
    nz = gt != 0
    rate = err[nz] / gt[nz]
    for p in (10, 30, 50):
        out[f"racc@{p}"] = float(np.mean(rate <= p / 100.0)) if nz.any() else float("nan")
    return out


def table_header(first: str = "Method") -> str:
    """The Markdown header of Table 1 (``first`` names the row column), two lines."""
    titles = [first] + [title for _, title, _, _ in _TABLE_COLUMNS]
    return "| " + " | ".join(titles) + " |\n|" + "---|" * len(titles)


def format_table_row(metrics: dict, name: str) -> str:
    """One Markdown row of the paper's Table 1 (accuracies in percent)."""
    cells = [name]
    for key, _, scale, dec in _TABLE_COLUMNS:
        cells.append(f"{metrics[key] * scale:.{dec}f}")
    return "| " + " | ".join(cells) + " |"


def format_table(rows: dict[str, dict], first: str = "Method") -> str:
    """Markdown table: row name (method, drop rate, ...) -> metrics dict."""
    return "\n".join([table_header(first)] + [format_table_row(m, n) for n, m in rows.items()])
