"""Choose the graph-cut refinement's weights on held-out *training-side* data (never GrabCut or
Berkeley): the SOIS protocol (docs/protocols.md §4) on the largest object of each image, one model loaded
once, every configuration on identical objects. Reports NoC@85/90, mIoU@k and the worst
click-to-click drop of the mean curve (corrections should never make masks worse).

    python benchmarks/tune_graphcut.py --data-root ../shared/data --datasets COCO_Tiny_val \\
        --objects 40 --pairwise 1 3 10 --band 2 4 8 --feedback refined network --parts clicked all
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from napari_icmformer.engine import Predictor, PredictorConfig
from napari_icmformer.evaluation import evaluate_object
from napari_icmformer.metrics import summarize
from napari_icmformer.refine import GraphCutConfig
from napari_icmformer.training.validation import ValidationSet


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--datasets", nargs="+", default=["COCO_Tiny_val"])
    p.add_argument("--checkpoint", default=None, help="default: the shipped iCMFormer")
    p.add_argument("--objects", type=int, default=40, help="objects per dataset (largest of each image)")
    p.add_argument("--skip", type=int, default=0,
                   help="drop the first SKIP objects of each dataset (a second, disjoint sample to confirm a choice)")
    p.add_argument("--max-side", type=int, default=640)
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--pairwise", type=float, nargs="+", default=[2.0])
    p.add_argument("--band", type=float, nargs="+", default=[0.25])
    p.add_argument("--click-radius", type=float, nargs="+", default=[3.0])
    p.add_argument("--color", type=float, nargs="+", default=[0.0],
                   help="weight(s) of the colour model in the unary term (GraphCutConfig.color)")
    p.add_argument("--feedback", nargs="+", default=["network"], choices=["network", "refined"])
    p.add_argument("--parts", nargs="+", default=["clicked"], choices=["clicked", "all"],
                   help="clicked: drop parts without a positive click (GraphCutConfig.drop_unclicked_parts)")
    p.add_argument("--flip", nargs="+", default=["off"], choices=["off", "on"],
                   help="PredictorConfig.flip: average the network over a horizontal flip")
    p.add_argument("--engine", nargs="+", default=["{}"],
                   help="PredictorConfig overrides, one JSON object each (e.g. zoom_refocus; nested "
                        "\"graphcut\" for other GraphCutConfig fields), crossed with the grid above")
    p.add_argument("--no-baseline", action="store_true", help="skip the refine='none' row")
    args = p.parse_args()

    objects = []
    for name in args.datasets:  # ValidationSet refuses the benchmarks
        found = ValidationSet.from_dataset(name, args.data_root, args.skip + args.objects, args.max_side, 1024).objects
        objects += found[args.skip:]
    model = Predictor.from_checkpoint(args.checkpoint).model
    configs: list[tuple[str, PredictorConfig]] = []
    if not args.no_baseline:
        configs.append(("none", PredictorConfig(device="cpu", refine="none")))
    for lam, band, radius, fb, parts, colour, flip, engine in itertools.product(
            args.pairwise, args.band, args.click_radius, args.feedback, args.parts, args.color, args.flip,
            args.engine):
        overrides = json.loads(engine)
        gc = replace(GraphCutConfig(pairwise=lam, band=band, click_radius=radius, feedback=fb,
                                    drop_unclicked_parts=parts == "clicked", color=colour),
                     **overrides.pop("graphcut", {}))
        configs.append((f"graphcut pairwise={lam:g} band={band:g} color={colour:g} r={radius:g} feedback={fb} "
                        f"parts={parts} flip={flip}" + (f" {engine}" if engine != "{}" else ""),
                        PredictorConfig(device="cpu", graphcut=gc, flip=flip == "on", **overrides)))
    k = args.max_clicks
    print(f"{len(objects)} objects from {args.datasets}, {k} clicks")
    print(f"| config | NoC@85 | NoC@90 | mIoU@1 | mIoU@5 | mIoU@10 | mIoU@{k} | worst drop | s/click |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, cfg in configs:
        predictor = Predictor(model, cfg)
        curves, seconds = [], 0.0
        for obj in tqdm(objects, desc=label, leave=False):
            predictor.set_image(obj.image)
            ious, _, s = evaluate_object(predictor, obj.mask, obj.ignore, k)
            curves.append(ious)
            seconds += s
        arr = np.asarray(curves)
        mean = arr.mean(0)
        drop = float(max(0.0, np.max(mean[:-1] - mean[1:])))
        s = summarize(curves, (0.85, 0.90), k)
        print(f"| {label} | {s['NoC@85']:.2f} | {s['NoC@90']:.2f} | {mean[0]:.3f} | {mean[4]:.3f} | "
              f"{mean[min(9, k - 1)]:.3f} | {mean[-1]:.3f} | {drop:.3f} | {seconds / (len(objects) * k):.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
