"""Choose the engine's zoom-in for small objects on *training-side* data (never GrabCut or
Berkeley): the SOIS protocol (docs/protocols.md §4) on random objects of each image, one model
loaded once, every configuration on identical objects. Reports NoC@85/90, mIoU@k and the worst
click-to-click drop of the mean curve, per dataset and per object size (the equivalent
diameter as a share of the image's long side).

    python benchmarks/tune_zoom.py --data-root ../shared/data --datasets "DSB2018[:50]" "MoNuSeg[56:]" \\
        COCO_Tiny_val --configs '{}' '{"zoom_refocus": 0.5}' '{"zoom_refocus": 0.5, "zoom_min_crop": 64}'
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from napari_icmformer.engine import Predictor, PredictorConfig
from napari_icmformer.evaluation import evaluate_object
from napari_icmformer.metrics import summarize
from napari_icmformer.refine import GraphCutConfig
from napari_icmformer.training.validation import open_dev_dataset

SIZE_BINS = ((0.0, 0.05, "small (< 5 % of the side)"), (0.05, 0.15, "medium (5-15 %)"), (0.15, 9.0, "large (> 15 %)"))


def pick_objects(name: str, data_root: str, per_image: int, images: int | None, min_area: int, seed: int):
    """(dataset, image index, mask, ignore, relative size) for ``per_image`` random objects of each image."""
    ds = open_dev_dataset(name, data_root)  # refuses the benchmarks
    for i in range(len(ds) if images is None else min(images, len(ds))):
        sample = ds[i]
        masks = [m for m in sample.masks if m.sum() >= min_area]
        rng = np.random.default_rng([seed, i])
        for j in rng.choice(len(masks), size=min(per_image, len(masks)), replace=False):
            m = masks[int(j)]
            rel = float(np.sqrt(4 * m.sum() / np.pi) / max(m.shape))
            yield sample.image, m, sample.ignore, rel


def make_config(overrides: dict) -> PredictorConfig:
    """A PredictorConfig from JSON overrides; ``graphcut`` holds GraphCutConfig overrides."""
    gc = replace(GraphCutConfig(), **overrides.pop("graphcut", {}))
    return PredictorConfig(device="cpu", graphcut=gc, **overrides)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--checkpoint", default=None, help="default: the shipped iCMFormer")
    p.add_argument("--configs", nargs="+", default=["{}"], help="PredictorConfig overrides, one JSON object each")
    p.add_argument("--per-image", type=int, default=3)
    p.add_argument("--images", type=int, default=None, help="first N images of each dataset")
    p.add_argument("--min-area", type=int, default=30)
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    model = Predictor.from_checkpoint(args.checkpoint).model
    configs = [(c, make_config(json.loads(c))) for c in args.configs]
    predictors = [(c, Predictor(model, cfg)) for c, cfg in configs]
    for name in args.datasets:
        curves: dict[str, list] = {c: [] for c, _ in predictors}
        sizes = []
        objs = list(pick_objects(name, args.data_root, args.per_image, args.images, args.min_area, args.seed))
        for image, mask, ignore, rel in tqdm(objs, desc=name):
            sizes.append(rel)
            for c, pr in predictors:
                pr.set_image(image)
                curves[c].append(evaluate_object(pr, mask, ignore, args.max_clicks)[0])
        sizes = np.asarray(sizes)
        print(f"\n## {name}: {len(objs)} objects (median diameter {np.median(sizes):.3f} of the side)")
        ks = [k for k in (1, 3, 5, 10, 20) if k <= args.max_clicks]
        print("| config | objects | NoC@85 | NoC@90 | " + " | ".join(f"mIoU@{k}" for k in ks) + " | worst drop |")
        print("|---" * (len(ks) + 5) + "|")
        for c, _ in predictors:
            for lo, hi, label in ((0.0, 9.0, "all"), *SIZE_BINS):
                sel = [cv for cv, r in zip(curves[c], sizes, strict=True) if lo <= r < hi]
                if not sel:
                    continue
                s = summarize(sel, (0.85, 0.90), args.max_clicks)
                mean = [s[f"mIoU@{k}"] for k in range(1, args.max_clicks + 1)]
                drop = max([0.0, *(a - b for a, b in zip(mean, mean[1:], strict=False))])
                ious = " | ".join(f"{s[f'mIoU@{k}']:.3f}" for k in ks)
                print(f"| {c} {label} | {len(sel)} | {s['NoC@85']:.2f} | {s['NoC@90']:.2f} | {ious} | {drop:.4f} |",
                      flush=True)


if __name__ == "__main__":
    main()
