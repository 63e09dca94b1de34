"""One mIoU-vs-clicks figure (and the per-click table) from several ``icmformer-eval`` SOIS runs'
``per_object.json`` files — e.g. a new refinement setting next to an earlier run's baselines on the
same datasets and the same simulated user.

    python benchmarks/plot_sois_runs.py results/sois_refine results/sois_color \\
        --label "results/sois_color:icmformer-default=graphcut + colour 0.3" --out docs/sois_miou_vs_clicks.png
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def load_curves(run: Path, labels: dict[str, str]) -> dict[tuple[str, str], np.ndarray]:
    data = json.loads((run / "per_object.json").read_text())
    curves: dict[tuple[str, str], list] = defaultdict(list)
    for row in data["objects"]:
        method = labels.get(f"{run}:{row['method']}", row["method"])
        curves[(row["dataset"], method)].append(row["ious"])
    return {k: np.asarray(v, float) for k, v in curves.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="icmformer-eval --out folders")
    p.add_argument("--label", action="append", default=[],
                   help="RUN:METHOD=NEW LABEL (rename a row; the last = splits)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    labels = dict(item.rsplit("=", 1) for item in args.label)
    curves: dict[tuple[str, str], np.ndarray] = {}
    for run in args.runs:
        curves.update(load_curves(run, labels))
    datasets = sorted({d for d, _ in curves}, key=[r for r, _ in curves].index)
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    ks = [1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20]
    print("| method / dataset | " + " | ".join(map(str, ks)) + " | worst drop k→k+1 |")
    print("|---|" + "---|" * (len(ks) + 1))
    for ax, dataset in zip(axes[0], datasets):
        for (d, method), arr in curves.items():
            if d != dataset:
                continue
            mean = arr.mean(0)
            ax.plot(np.arange(1, len(mean) + 1), mean, marker=".", label=f"{method} ({len(arr)})")
            drop = float(max(0.0, np.max(mean[:-1] - mean[1:])))
            cells = " | ".join(f"{mean[k - 1]:.2f}" for k in ks if k <= len(mean))
            print(f"| {method} / {dataset} | {cells} | {drop:.3f} |")
        ax.set_title(dataset)
        ax.set_xlabel("clicks")
        ax.set_ylabel("mIoU")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
