"""The Find-similar size rule: proposals under a fraction of the exemplar's area are specks.

For each fraction f: the share of ground-truth objects under f x their exemplar's area (what the
rule would wrongly drop from a perfect proposal), and the object F1 (IoU > 0.5) of the shipped
iCMFormer++ proposal from a golden exemplar (the k = 0 mask of ``icmformer-eval --task mois``:
same targets, same DIOS exemplar clicks) with the rule at f. ``RecallConfig.min_area``
is chosen here, on training splits only::

    python benchmarks/bench_size_rule.py --data-root ../shared/data --datasets "DSB2018[:50]" "MoNuSeg[56:]"
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from napari_icmformer.data.readers import open_dataset
from napari_icmformer.evaluation_mois import target_seed
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.metrics import instance_f1
from napari_icmformer.mois import build_mois_targets, dios_clicks
from napari_icmformer.postprocess import click_instances, split_height
from src_models import Clicks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--datasets", nargs="+", default=["DSB2018[:50]", "MoNuSeg[56:]"])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--checkpoint", default=None, help="iCMFormer++ checkpoint (default: the shipped one)")
    args = p.parse_args()
    recaller = ExemplarPredictor.from_checkpoint(args.checkpoint, RecallConfig(device="cpu"))
    print("| dataset | targets | GT objects | row | " + " | ".join(f"f={f}" for f in args.fractions) + " |")
    print("|---|---|---|---|" + "---|" * len(args.fractions))
    for name in args.datasets:
        ds = open_dataset(name, args.data_root)
        rng = np.random.default_rng(0)
        lost: list[list[float]] = []
        f1: list[list[float]] = []
        n_objects = 0
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        for i in tqdm(range(n), desc=name, leave=False):
            sample = ds[i]
            for t_index, target in enumerate(build_mois_targets(sample, rng)):
                area = float(target.exemplar.sum())
                sizes = np.array([m.sum() for m in target.instances], float)
                n_objects += len(sizes)
                lost.append([float((sizes < f * area).sum()) for f in args.fractions])
                recaller.set_image(sample.image)
                clicks = dios_clicks(target.exemplar, np.random.default_rng(target_seed(0, i, t_index)))
                recaller.set_exemplar(target.exemplar, clicks)
                mask = recaller.recall().mask
                h = split_height(target.exemplar, recaller.config.split_h_per_radius)
                f1.append([instance_f1(click_instances(mask, Clicks(), h, max(16.0, f * area))[0],
                                       target.instances, ignore=target.ignore) for f in args.fractions])
        share = np.sum(lost, axis=0) / max(n_objects, 1)
        print(f"| {name} | {len(f1)} | {n_objects} | GT objects dropped | "
              + " | ".join(f"{v:.2%}" for v in share) + " |")
        print(f"| {name} | | | proposal object F1 | " + " | ".join(f"{v:.3f}" for v in np.mean(f1, axis=0)) + " |",
              flush=True)


if __name__ == "__main__":
    main()
