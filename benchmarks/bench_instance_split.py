"""How well ``split_instances`` turns a category mask into instances (object F1, IoU > 0.5).

Splits the ground-truth category mask of every image (the union of its instances), so the
number measures the splitter alone; ``--proposal`` adds the shipped iCMFormer++ proposal from a
golden exemplar (the k = 0 mask of ``icmformer-eval --task mois``, same targets and seeds).
Choose parameters on training splits only, e.g.::

    python benchmarks/bench_instance_split.py --data-root ../shared/data \\
        --datasets "DSB2018[:50]" "MoNuSeg[56:]" COCO_Tiny_train --h none 1 r0.1 r0.2 r0.3
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from napari_icmformer.data.readers import open_dataset
from napari_icmformer.evaluation_mois import target_seed
from napari_icmformer.exemplar import ExemplarPredictor
from napari_icmformer.metrics import instance_f1
from napari_icmformer.mois import build_mois_targets, dios_clicks
from napari_icmformer.postprocess import split_height, split_instances


def height(spec: str, exemplar: np.ndarray) -> float | None:
    """``none`` -> None (local maxima), ``rC`` -> the engine's exemplar-relative rule, else px."""
    if spec.lower() == "none":
        return None
    return split_height(exemplar, float(spec[1:])) if spec.startswith("r") else float(spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--datasets", nargs="+", default=["DSB2018[:50]", "MoNuSeg[56:]"])
    p.add_argument("--h", nargs="+", default=["none", "1", "r0.1"],
                   help="marker heights in px; rC = max(1, C x the exemplar's radius) (the engine's rule); "
                        "none = local maxima only")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--proposal", action="store_true", help="also split the shipped iCMFormer++ proposal")
    args = p.parse_args()
    recaller = ExemplarPredictor.from_checkpoint(None) if args.proposal else None
    print("| dataset | mask | connected components | " + " | ".join(f"h={h}" for h in args.h) + " |")
    print("|---|---|---|" + "---|" * len(args.h))
    for name in args.datasets:
        ds = open_dataset(name, args.data_root)
        rng = np.random.default_rng(0)
        scores: dict[str, list[list[float]]] = {"GT": [], "proposal": []}
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        for i in tqdm(range(n), desc=name, leave=False):
            sample = ds[i]
            for t_index, target in enumerate(build_mois_targets(sample, rng)):
                masks = {"GT": target.target}
                if recaller is not None:  # the exemplar clicks of icmformer-eval --task mois (seed 0)
                    recaller.set_image(sample.image)
                    rng_clicks = np.random.default_rng(target_seed(0, i, t_index))
                    recaller.set_exemplar(target.exemplar, dios_clicks(target.exemplar, rng_clicks))
                    masks["proposal"] = recaller.recall().mask
                for kind, mask in masks.items():
                    row = [instance_f1(ndimage.label(mask)[0], target.instances, ignore=target.ignore)]
                    row += [instance_f1(split_instances(mask, h=height(h, target.exemplar)), target.instances,
                                        ignore=target.ignore) for h in args.h]
                    scores[kind].append(row)
        for kind, rows in scores.items():
            if rows:
                means = np.mean(rows, axis=0)
                print(f"| {name} | {kind} | " + " | ".join(f"{v:.3f}" for v in means) + " |", flush=True)


if __name__ == "__main__":
    main()
