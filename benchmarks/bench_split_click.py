"""What a *split click* (a positive Find-similar click inside a proposal) does on real merges.

The automatic split (``split_instances``) of the ground-truth category mask merges some touching
objects; for every merged proposal (two or more GT objects with at least half their area in it)
the simulated user clicks the centre of its largest GT object, and ``split_off_click`` cuts the
click's object out. Reported: merges, the share whose clicked object then matches its GT (IoU >
0.5), the GT objects matched inside the merges before / after, and the *harm* rate: a split click
on a proposal that is already one right object must leave it right. Tune on training splits only::

    python benchmarks/bench_split_click.py --data-root ../shared/data --datasets "DSB2018[:50]" "MoNuSeg[56:]"
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from napari_icmformer.clicking import first_eval_click
from napari_icmformer.data.readers import open_dataset
from napari_icmformer.metrics import iou
from napari_icmformer.mois import build_mois_targets
from napari_icmformer.postprocess import split_height, split_instances, split_off_click


def matched(piece_labels: np.ndarray, gts: list[np.ndarray]) -> int:
    """GT objects matched (IoU > 0.5) by some label of ``piece_labels``."""
    count = 0
    for g in gts:
        ids, area = np.unique(piece_labels[g], return_counts=True)
        best = max((iou(piece_labels == i, g) for i in ids[ids > 0]), default=0.0)
        count += best > 0.5
    return count


def after_split(piece: np.ndarray, own: np.ndarray | None, h: float) -> np.ndarray:
    """The labels of ``piece`` after the click: the click's object, the rest split as usual."""
    if own is None:
        return piece.astype(np.int32)
    rest = split_instances(piece & ~ndimage.binary_dilation(own, np.ones((3, 3))), min_size=1, h=h)
    return np.where(own, rest.max() + 1, rest).astype(np.int32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--datasets", nargs="+", default=["DSB2018[:50]", "MoNuSeg[56:]"])
    p.add_argument("--fine-h", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    p.add_argument("--min-height", nargs="+", default=["1"],
                   help="px, or rC = C x the exemplar's equivalent radius")
    p.add_argument("--too-big", type=float, nargs="+", default=[0.0, 1.3, 1.6],
                   help="fallback without a second dome when the proposal exceeds this x the exemplar's "
                        "area (0 = off)")
    p.add_argument("--reach", type=float, default=1.5)
    p.add_argument("--min-part", type=float, nargs="+", default=[0.0, 0.1, 0.25],
                   help="both parts must hold this x the exemplar's area (0 = off)")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args()
    variants = list(itertools.product(args.fine_h, args.min_height, args.too_big, args.min_part))
    print("| dataset | fine_h | min_height | too_big | min_part | merges | clicked object right "
          "| GT matched in merges before → after | harm on right objects |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.datasets:
        ds = open_dataset(name, args.data_root)
        rng = np.random.default_rng(0)
        stats = {v: np.zeros(5) for v in variants}  # merges, clicked right, before, after, harmed
        singles = 0
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        for i in tqdm(range(n), desc=name, leave=False):
            for target in build_mois_targets(ds[i], rng):
                radius = float(np.sqrt(target.exemplar.sum() / np.pi))
                h = split_height(target.exemplar, 0.1)
                labels = split_instances(target.target, h=h)
                boxes = ndimage.find_objects(labels)
                for lab, tight in enumerate(boxes, start=1):
                    if tight is None:
                        continue
                    box = tuple(slice(max(0, s.start - 2), s.stop + 2) for s in tight)
                    piece = labels[box] == lab
                    inside = [g[box] for g in target.instances
                              if g[box].any() and (g[box] & piece).sum() >= 0.5 * g.sum()]
                    if not inside:
                        continue
                    big = max(inside, key=lambda g: int(g.sum()))
                    c = first_eval_click(big & piece)
                    y, x = int(c.y), int(c.x)
                    single = len(inside) == 1 and iou(piece, big) > 0.5
                    singles += single
                    for fh, mh, tb, mp in variants:
                        min_h = radius * float(mh[1:]) if mh.startswith("r") else float(mh)
                        own = split_off_click(piece, y, x, fine_h=fh, min_height=min_h,
                                              expected_area=float(target.exemplar.sum()) if tb or mp else None,
                                              too_big=tb or np.inf, reach=args.reach, min_part=mp)
                        if single:
                            stats[fh, mh, tb, mp][4] += own is not None and iou(own, big) <= 0.5
                        elif len(inside) > 1:
                            s = stats[fh, mh, tb, mp]
                            s[0] += 1
                            s[1] += own is not None and iou(own, big) > 0.5
                            s[2] += matched(piece.astype(np.int32), inside)
                            s[3] += matched(after_split(piece, own, h), inside)
        for (fh, mh, tb, mp), s in stats.items():
            m = max(s[0], 1)
            print(f"| {name} | {fh} | {mh} | {tb or 'off'} | {mp or 'off'} | {int(s[0])} | {s[1] / m:.2f} "
                  f"| {int(s[2])} → {int(s[3])} "
                  f"| {s[4] / max(singles, 1):.3f} |", flush=True)


if __name__ == "__main__":
    main()
