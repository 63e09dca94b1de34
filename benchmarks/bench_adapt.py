"""Adapt to my images, measured: adapt both shipped models on the objects of a few images of a
held-out nuclei set (``napari_icmformer.adapt``), then score the other images of the same set,
before and after: SOIS NoC@85/90 and mIoU@3 (simulated clicks, engine defaults, 20 clicks) on
sampled objects, and Find-similar object F1 (golden exemplar, first proposals, MOIS
"additional" protocol) on one Alg. 1 target per image.

    OMP_NUM_THREADS=1 python benchmarks/bench_adapt.py --data-root ../shared/data \\
        --dataset "DSB2018[50:]" --adapt-images 0 1 2 --minutes 5 --out results/adapt

The adaptation budget is this process's CPU time (``AdaptConfig.clock = "cpu"``) so that a
shared machine gives the same number of steps as a quiet one; wall seconds are reported too.
The scoring of the other images never sees the adaptation images; nothing here reads GrabCut
or Berkeley.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from napari_icmformer.adapt import AdaptConfig, adapt
from napari_icmformer.adapt_data import as_annotated
from napari_icmformer.checkpoints import load_model
from napari_icmformer.data import open_dataset
from napari_icmformer.engine import Predictor, PredictorConfig
from napari_icmformer.evaluation import evaluate_object
from napari_icmformer.evaluation_mois import evaluate_mois_target, target_seed
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.metrics import summarize
from napari_icmformer.mois import build_mois_targets
from napari_icmformer.weights import DEFAULTS


def score_images(sois_model, mois_model, ds, indices, objects_per_image: int, max_clicks: int, seed: int,
                 min_area: int = 30) -> dict[str, float]:
    """SOIS and Find-similar scores of two models on the images ``indices`` of ``ds``."""
    predictor = Predictor(sois_model, PredictorConfig(device="cpu"))
    recaller = ExemplarPredictor(mois_model, RecallConfig(device="cpu"))
    curves, f1, cat_iou = [], [], []
    for i in tqdm(indices, desc="scoring", leave=False):
        sample = ds[i]
        rng = np.random.default_rng([seed, i])
        masks = [m for m in sample.masks if m.sum() >= min_area]
        picks = rng.choice(len(masks), size=min(objects_per_image, len(masks)), replace=False)
        predictor.set_image(sample.image)
        for j in picks:
            curves.append(evaluate_object(predictor, masks[int(j)], sample.ignore, max_clicks)[0])
        for t, target in enumerate(build_mois_targets(sample, np.random.default_rng([seed, i, 1]))):
            res = evaluate_mois_target(recaller, None, sample.image, target, "additional", 0, target_seed(seed, i, t))
            f1.append(res.instance_f1[0])
            cat_iou.append(res.ious[0])
    s = summarize(curves, (0.85, 0.90), max_clicks)
    return {"objects": len(curves), "NoC@85": s["NoC@85"], "NoC@90": s["NoC@90"], "mIoU@1": s["mIoU@1"],
            "mIoU@3": s["mIoU@3"], "targets": len(f1), "F1": float(np.mean(f1)),
            "category IoU": float(np.mean(cat_iou))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--dataset", required=True, help='e.g. "DSB2018[50:]" or "MoNuSeg[:56]"')
    p.add_argument("--adapt-images", type=int, nargs="+", required=True, help="indices adapted on")
    p.add_argument("--minutes", type=float, default=5.0, help="CPU minutes of adaptation")
    p.add_argument("--objects-per-image", type=int, default=4)
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--limit", type=int, help="score at most this many of the other images")
    p.add_argument("--recipe", default="{}", help="JSON of AdaptConfig fields to try (tuning)")
    p.add_argument("--tag", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/adapt"))
    args = p.parse_args(argv)
    ds = open_dataset(args.dataset, args.data_root)
    others = [i for i in range(len(ds)) if i not in args.adapt_images][: args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.dataset.replace("[", "_").replace(":", "-").replace("]", "")
    items = []
    for i in args.adapt_images:
        s = ds[i]
        items.append(as_annotated(s.name, s.image, s.labels if s.labels is not None else _labels(s)))
    cfg = replace(AdaptConfig(minutes=args.minutes, clock="cpu", seed=args.seed), **json.loads(args.recipe))
    t, c = time.monotonic(), time.process_time()
    result = adapt(items, cfg)
    adapt_wall, adapt_cpu = time.monotonic() - t, time.process_time() - c
    print(f"adapted in {adapt_cpu:.0f} CPU s ({adapt_wall:.0f} wall s): "
          f"SOIS {result.report['sois']['steps']} steps (best {result.report['sois']['best_step']}), "
          f"MOIS {result.report['mois'].get('steps')} steps (best {result.report['mois'].get('best_step')})")
    # scored in this process, beside the adapted models: the engine's defaults (refinement,
    # recall views) are read once, so before and after always share them
    before = score_images(load_model(DEFAULTS["sois"]), load_model(DEFAULTS["mois"]), ds, others,
                          args.objects_per_image, args.max_clicks, args.seed)
    mois_after = result.mois_model if result.mois_model is not None else load_model(DEFAULTS["mois"])
    after = score_images(result.sois_model, mois_after, ds, others, args.objects_per_image, args.max_clicks,
                         args.seed)
    out = {"dataset": args.dataset, "adapt_images": [ds[i].name for i in args.adapt_images],
           "scored_images": len(others), "adapt_cpu_s": adapt_cpu, "adapt_wall_s": adapt_wall,
           "recipe": json.loads(args.recipe), "before": before, "after": after,
           "report": {k: v for k, v in result.report.items() if k != "config"}, "config": result.report["config"]}
    (args.out / f"{name}_{args.tag}.json").write_text(json.dumps(out, indent=1))
    cut = 1 - after["NoC@85"] / before["NoC@85"]
    print(f"| {args.dataset} | {len(items)} images, {sum(t.n_objects for t in items)} objects | "
          f"{before['NoC@85']:.2f} → {after['NoC@85']:.2f} ({cut:+.0%} cut) | {before['NoC@90']:.2f} → "
          f"{after['NoC@90']:.2f} | {before['mIoU@3']:.3f} → {after['mIoU@3']:.3f} | {before['F1']:.3f} → "
          f"{after['F1']:.3f} ({after['F1'] - before['F1']:+.3f}) |")
    return 0


def _labels(sample) -> np.ndarray:
    labels = np.zeros(sample.image.shape[:2], np.int32)
    for k, m in enumerate(sample.masks, start=1):
        labels[m] = k
    return labels


if __name__ == "__main__":
    raise SystemExit(main())
