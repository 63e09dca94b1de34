"""Does the exemplar decide what Find similar proposes? Two kinds of object in one image, the
exemplar from one kind, then from the other.

For every image with two or more MOIS targets (two categories with ≥ 2 instances each: COCO
photos), and for "mosaics" that put an image of one dataset beside an image of another (two kinds
of nuclei side by side: ``--mosaic "DSB2018[50:]" "MoNuSeg[:14]"``), each target's exemplar (DIOS
clicks, same seeds as ``icmformer-eval --task mois``) gives a proposal P, scored by

* **right IoU**: IoU of P with the exemplar's own category target;
* **other kind covered**: the share of the other category's pixels that P proposes (0 when the
  exemplar decides, near the right IoU when the model proposes "every object");
* **swap IoU**: IoU between the proposals of the two exemplars (1 = the exemplar is ignored).

Run per checkpoint on held-out data::

    python benchmarks/bench_exemplar_swap.py --data-root ../shared/data --datasets "COCO_Tiny_val[:30]" \
        --mosaic "DSB2018[50:]" "MoNuSeg[:14]" --checkpoint A.pt B.pt
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from PIL import Image
from tqdm import tqdm

from napari_icmformer.data.readers import LabelMasks, Sample, open_dataset
from napari_icmformer.evaluation_mois import target_seed
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.metrics import iou
from napari_icmformer.mois import build_mois_targets, dios_clicks


def side_by_side(left: Sample, right: Sample, height: int = 448) -> Sample:
    """The two images at one height, left beside right; left's objects are category 1, right's 2."""
    parts, labels = [], []
    for s in (left, right):
        scale = height / s.image.shape[0]
        size = (max(1, round(s.image.shape[1] * scale)), height)
        parts.append(np.asarray(Image.fromarray(s.image).resize(size, Image.BILINEAR)))
        lab = np.zeros(s.image.shape[:2], np.int32)
        for k, m in enumerate(s.masks, start=1):
            lab[np.asarray(m, bool)] = k
        labels.append(np.asarray(Image.fromarray(lab).resize(size, Image.NEAREST)))
    offset = int(labels[0].max())
    lab = np.concatenate([labels[0], np.where(labels[1] > 0, labels[1] + offset, 0)], axis=1)
    masks = LabelMasks(lab)
    cats = [1 if i <= offset else 2 for i in masks.ids]
    return Sample(f"{left.name}|{right.name}", np.concatenate(parts, axis=1), masks, cats)


def scenes(args) -> list[tuple[str, int, Sample]]:
    out = []
    for name in args.datasets:
        ds = open_dataset(name, args.data_root)
        out += [(name, i, ds[i]) for i in range(len(ds) if args.limit is None else min(args.limit, len(ds)))]
    if args.mosaic:
        a, b = (open_dataset(n, args.data_root) for n in args.mosaic)
        n = min(len(a), len(b)) if args.limit is None else min(args.limit, len(a), len(b))
        out += [(" + ".join(args.mosaic), i, side_by_side(a[i], b[i])) for i in range(n)]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--datasets", nargs="*", default=["COCO_Tiny_val[:30]"])
    p.add_argument("--mosaic", nargs=2, default=None, metavar=("LEFT", "RIGHT"))
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--checkpoint", nargs="+", default=[None], help="iCMFormer++ checkpoints (default: shipped)")
    args = p.parse_args()
    items = scenes(args)
    print("| checkpoint | images | exemplar pairs | right IoU | other kind covered | swap IoU |")
    print("|---|---|---|---|---|---|")
    for ckpt in args.checkpoint:
        recaller = ExemplarPredictor.from_checkpoint(ckpt, RecallConfig(device="cpu"))
        rows: dict[str, list[tuple[float, float, float]]] = {}
        for name, i, sample in tqdm(items, desc=str(ckpt), leave=False):
            targets = build_mois_targets(sample, np.random.default_rng(0))
            if len(targets) < 2:
                continue
            recaller.set_image(sample.image)
            props = []
            for t_index, t in enumerate(targets):
                clicks = dios_clicks(t.exemplar, np.random.default_rng(target_seed(0, i, t_index)))
                recaller.set_exemplar(t.exemplar, clicks)
                props.append(recaller.recall().mask > 0)
            for a, b in itertools.permutations(range(len(targets)), 2):
                other = targets[b].target & ~targets[a].target
                rows.setdefault(name, []).append((
                    iou(props[a], targets[a].target, targets[a].ignore),
                    float(props[a][other].mean()) if other.any() else 0.0,
                    iou(props[a], props[b])))
        for name, vals in rows.items():
            m = np.mean(vals, axis=0)
            print(f"| {ckpt or 'shipped'} | {name} | {len(vals)} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
