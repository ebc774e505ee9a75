"""Sparsification curves: how a per-pixel confidence ranks errors (Ilg et al. 2018; Poggi et al. 2020).

Pixels are removed from least to most confident and the metric (AbsRel, RMSE) of the remaining ones is recorded at
``FRACTIONS`` removed. The oracle removes by true error (the best any ranking can do), random removal leaves the
metric unchanged in expectation (its curve is the metric of all pixels). Areas are the mean over ``FRACTIONS`` (a
Riemann sum over the removed fraction 0..1): AUSE = area(curve - oracle) (0 is perfect), AURG = area(random - curve)
(> 0: better than random).
"""

from __future__ import annotations

import numpy as np

FRACTIONS = np.round(np.arange(0.0, 1.0, 0.05), 2)  # removed: 0, 0.05, ..., 0.95
METRICS = ("abs_rel", "rmse")


def _kept_metric(errors_sorted: np.ndarray, kept: np.ndarray, metric: str) -> np.ndarray:
    """Metric of the first ``kept[i]`` pixels of ``errors_sorted`` (per-pixel |rel| or squared errors) for each i."""
    cumulative = np.concatenate([[0.0], np.cumsum(errors_sorted)])
    mean = cumulative[kept] / kept
    return np.sqrt(mean) if metric == "rmse" else mean


def sparsification(pred: np.ndarray, gt: np.ndarray, confidence: np.ndarray,
                   fractions: np.ndarray = FRACTIONS) -> dict[str, dict]:
    """Curves, oracle, random, AUSE and AURG of AbsRel and RMSE for 1-D ``pred``, ``gt`` (valid pixels only) and
    ``confidence``. Ties in confidence keep the pixels' order (a stable sort), so the result is deterministic."""
    pred, gt, confidence = (np.asarray(a, np.float64).ravel() for a in (pred, gt, confidence))
    if not (pred.size == gt.size == confidence.size) or pred.size == 0:
        raise ValueError(f"sparsification needs equal, non-empty inputs; got {pred.size}, {gt.size}, "
                         f"{confidence.size} pixels")
    n = pred.size
    kept = np.maximum(1, np.rint(n * (1.0 - np.asarray(fractions))).astype(int))
    by_confidence = np.argsort(-confidence, kind="stable")
    out = {}
    for metric in METRICS:
        err = np.abs(pred - gt) / gt if metric == "abs_rel" else (pred - gt) ** 2
        curve = _kept_metric(err[by_confidence], kept, metric)
        oracle = _kept_metric(np.sort(err), kept, metric)
        random = np.full(len(kept), _kept_metric(err, np.array([n]), metric)[0])
        out[metric] = {"curve": curve, "oracle": oracle, "random": random,
                       "ause": float(np.mean(curve - oracle)), "aurg": float(np.mean(random - curve))}
    return out


def reliability_counts(rel_err: np.ndarray, confidence: np.ndarray, threshold: float, bins: int = 10) -> np.ndarray:
    """(bins, 3) sums per confidence bin of [pixels, confidence, pixels with relative error < threshold]: summed over
    frames, they say whether confidence means P(relative error < threshold) (``reliability``)."""
    index = np.minimum((np.asarray(confidence) * bins).astype(int), bins - 1)
    counts = np.zeros((bins, 3))
    np.add.at(counts, index, np.stack([np.ones_like(rel_err), confidence, rel_err < threshold], 1))
    return counts


def reliability(counts: np.ndarray, threshold: float) -> dict:
    """Mean confidence against the observed fraction within ``threshold``, overall and per non-empty bin."""
    n = counts[:, 0].sum()
    rows = [{"confidence": float(c[1] / c[0]), "observed": float(c[2] / c[0]), "pixel_fraction": float(c[0] / n)}
            for c in counts if c[0] > 0]
    return {"threshold": threshold, "mean_confidence": float(counts[:, 1].sum() / n),
            "observed_within_threshold": float(counts[:, 2].sum() / n), "bins": rows}


def mean_curves(per_frame: list[dict[str, dict]], fractions: np.ndarray = FRACTIONS) -> dict:
    """Frame-averaged curves and areas, as the ``confidence`` entry of the evaluation JSON."""
    summary: dict = {}
    rows = [{"removed": float(f)} for f in fractions]
    for metric in METRICS:
        for kind in ("curve", "oracle", "random"):
            mean = np.mean([frame[metric][kind] for frame in per_frame], 0)
            for row, value in zip(rows, mean):
                row[metric if kind == "curve" else f"{metric}_{kind}"] = float(value)
        for area in ("ause", "aurg"):
            summary.setdefault(metric, {})[area] = float(np.mean([frame[metric][area] for frame in per_frame]))
    at_20 = int(np.flatnonzero(np.isclose(fractions, 0.2))[0])
    return {"ause": summary["abs_rel"]["ause"], "aurg": summary["abs_rel"]["aurg"],
            "abs_rel_all": rows[0]["abs_rel"], "abs_rel_kept_80": rows[at_20]["abs_rel"],
            "rmse": summary["rmse"], "frames": len(per_frame), "curve": rows}


def plot(summary: dict, path, title: str = "", extra: dict | None = None) -> None:
    """PNG of the AbsRel and RMSE sparsification curves against oracle and random (``extra``: the confidence
    sharpened by a live LR depth, on the same pixels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["curve"]
    removed = [r["removed"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, METRICS):
        ax.plot(removed, [r[metric] for r in rows], label="confidence", color="tab:blue")
        ax.plot(removed, [r[f"{metric}_oracle"] for r in rows], label="oracle (by true error)", color="tab:green")
        ax.plot(removed, [r[f"{metric}_random"] for r in rows], label="random", color="tab:gray", linestyle="--")
        if extra:
            ax.plot(removed, [r[metric] for r in extra["curve"]], label="with the live LR depth", color="tab:orange")
        ax.set_xlabel("fraction of pixels removed (least confident first)")
        ax.set_ylabel(f"{metric} of the remaining pixels" + (" (m)" if metric == "rmse" else ""))
        ax.grid(alpha=0.3)
    axes[0].legend()
    with_lr = f"; with the live LR depth {extra['ause']:.4f}, {extra['aurg']:.4f}" if extra else ""
    fig.suptitle(title or f"sparsification, AUSE {summary['ause']:.4f}, AURG {summary['aurg']:.4f} (AbsRel){with_lr}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
