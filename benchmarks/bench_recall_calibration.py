"""Find similar's outlines: does the threshold or a grow/shrink of each proposal fit the objects better?

Annotate-all users stop when the category's objects are all there *and* well outlined (mean
matched IoU ≥ 0.8); proposals that are systematically a pixel too small or too large cost a
redo per object. For each threshold t and each per-instance offset d (px; > 0 grows every
proposal into free pixels with ``skimage.segmentation.expand_labels``, < 0 erodes each one):
object F1 (IoU > 0.5) and mean matched IoU of the shipped iCMFormer++ proposal from a golden
exemplar (the k = 0 mask of ``icmformer-eval --task mois``: same targets, same DIOS clicks),
from the network's probability as it is (``--cuts none``) or after a min-cut of it (``--cuts
PAIRWISE:BAND_PX:COLOUR``; the shipped ``RecallConfig.refine`` is one of these).
Run on held-out validation splits only (not the annotate-all benchmark images)::

    python benchmarks/bench_recall_calibration.py --data-root ../shared/data \\
        --datasets "DSB2018[40:50]" "MoNuSeg[16:56]" "COCO_Tiny_val[30:]"
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
from scipy import ndimage
from skimage.segmentation import expand_labels
from tqdm import tqdm

from napari_icmformer.data.readers import open_dataset
from napari_icmformer.evaluation_mois import target_seed
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.image import to_rgb01
from napari_icmformer.metrics import match_instances
from napari_icmformer.mois import build_mois_targets, dios_clicks
from napari_icmformer.postprocess import click_instances, split_height
from napari_icmformer.refine import graphcut_refine
from src_models import Clicks


def offset_labels(labels: np.ndarray, d: int) -> np.ndarray:
    """Every instance grown by ``d`` px into free pixels (d > 0) or eroded by ``-d`` px (d < 0)."""
    if d > 0:
        return expand_labels(labels, d)
    if d == 0:
        return labels
    out = labels.copy()
    for lab, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in found)
        piece = labels[box] == lab
        kept = ndimage.binary_erosion(piece, iterations=-d)
        out[box][piece & ~kept] = 0
    return out


def cut_mask(rgb: np.ndarray, prob: np.ndarray, threshold: float, spec: str) -> np.ndarray:
    """The recall mask after the shipped recall cut's settings with ``spec`` = PAIRWISE:BAND_PX[:COLOR]
    over the whole image (``rgb``: float in [0, 1]; no clicks, every part kept)."""
    parts = [float(v) for v in spec.split(":")]
    cfg = replace(RecallConfig().graphcut, pairwise=parts[0], band=parts[1],
                  color=parts[2] if len(parts) > 2 else 0.0)
    return graphcut_refine(rgb, prob, Clicks(), threshold, cfg, band_px=cfg.band)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--datasets", nargs="+", default=["DSB2018[40:50]", "MoNuSeg[16:56]", "COCO_Tiny_val[30:]"])
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6])
    p.add_argument("--offsets", type=int, nargs="+", default=[-1, 0, 1, 2])
    p.add_argument("--cuts", nargs="+", default=["none"],
                   help="graph cuts of the recall probability to try: 'none' or PAIRWISE:BAND_PX[:COLOR]")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--checkpoint", default=None, help="iCMFormer++ checkpoint (default: the shipped one)")
    args = p.parse_args()
    # the network's own probability: the cuts tried here replace the shipped RecallConfig.refine
    recaller = ExemplarPredictor.from_checkpoint(args.checkpoint, RecallConfig(device="cpu", refine="none"))
    combos = [(c, t, d) for c in args.cuts for t in args.thresholds for d in args.offsets]
    print("| dataset | targets | cut | threshold | offset px | object F1 | mean matched IoU | matched IoU ≥ 0.8 |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.datasets:
        ds = open_dataset(name, args.data_root)
        rng = np.random.default_rng(0)
        scores: dict[tuple[str, float, int], list[tuple[float, float, float]]] = {c: [] for c in combos}
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        for i in tqdm(range(n), desc=name, leave=False):
            sample = ds[i]
            for t_index, target in enumerate(build_mois_targets(sample, rng)):
                recaller.set_image(sample.image)
                clicks = dios_clicks(target.exemplar, np.random.default_rng(target_seed(0, i, t_index)))
                recaller.set_exemplar(target.exemplar, clicks)
                prob = recaller.recall().prob
                h = split_height(target.exemplar, recaller.config.split_h_per_radius)
                min_area = max(16.0, recaller.config.min_area * float(target.exemplar.sum()))
                rgb = to_rgb01(sample.image)
                for cut in args.cuts:
                    for t in args.thresholds:
                        mask = prob > t if cut == "none" else cut_mask(rgb, prob, t, cut)
                        labels = click_instances(mask, Clicks(), h, min_area)[0]
                        for d in args.offsets:
                            m = match_instances(offset_labels(labels, d), target.instances, ignore=target.ignore)
                            good = np.mean([v >= 0.8 for _, _, v in m.pairs]) if m.pairs else 0.0
                            scores[(cut, t, d)].append((m.f1, m.mean_iou, float(good)))
        for (cut, t, d), rows in scores.items():
            f1, miou, good = np.mean(rows, axis=0) if rows else (0.0, 0.0, 0.0)
            print(f"| {name} | {len(rows)} | {cut} | {t:g} | {d:+d} | {f1:.3f} | {miou:.3f} | {good:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
