"""What *Find similar* costs: iCMFormer++ latency per network view size, cached vs uncached.

    python benchmarks/bench_recall_latency.py --views 224 448 --clicks 10
    python benchmarks/bench_recall_latency.py --views 448 --grid 3     # 909 x 1152: 12 tiles

Uses the shipped iCMFormer++ default on the bundled ``coins`` image (``--grid N``: N x N copies,
a large image that is seen in tiles) with a median-sized coin as exemplar.
"find similar" = set_image + set_exemplar + the first recall (what the user waits for after
pressing the button); "cached click" = one recall click reusing the image and exemplar features;
"uncached click" = the reference full two-branch forward for the same click (both include the
graph cut of ``RecallConfig.refine``; ``--refine graphcut none`` times it). Medians over
``--clicks`` clicks after ``--warmup``.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time

import numpy as np
import torch
from skimage import data, filters, measure

from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from src_models import Clicks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, nargs="+", default=[224, 448])
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--grid", type=int, default=1, help="N x N copies of coins (a large image)")
    ap.add_argument("--refine", nargs="+", default=["graphcut"], choices=["graphcut", "none"],
                    help="RecallConfig.refine settings to time (the shipped one first)")
    args = ap.parse_args()
    image = np.tile(data.coins(), (args.grid, args.grid))
    labels = measure.label(image > filters.threshold_otsu(image))
    areas = np.bincount(labels.ravel())[1:]
    coins = np.flatnonzero(areas >= 200) + 1
    exemplar = labels == coins[np.argsort(areas[coins - 1])[len(coins) // 2]]  # a median-sized coin
    cy, cx = (int(v) for v in np.argwhere(exemplar).mean(0))
    rng = np.random.default_rng(0)
    h, w = image.shape
    clicks = [Clicks().add(*rng.uniform(5, min(h, w) - 5, 2)) for _ in range(args.clicks + args.warmup)]
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}, image {h}x{w}")
    print("| view | refine | tiles | find similar (ms) | cached click (ms) | uncached click (ms) | cached/uncached |")
    print("|---|---|---|---|---|---|---|")
    for view, refine in itertools.product(args.views, args.refine):
        rec = ExemplarPredictor.from_checkpoint(None, RecallConfig(device=args.device, view=view, refine=refine))
        t = time.perf_counter()
        rec.set_image(image)
        rec.set_exemplar(exemplar, Clicks().add(cy, cx))
        first = rec.recall()
        find = time.perf_counter() - t
        for c in clicks[: args.warmup]:
            rec.recall(c, first.prob)
        cached, uncached = [], []
        for c in clicks[args.warmup:]:
            t = time.perf_counter()
            rec.recall(c, first.prob)
            cached.append(time.perf_counter() - t)
            t = time.perf_counter()
            rec._reference_recall(c, first.prob)
            uncached.append(time.perf_counter() - t)
        mc, mu = statistics.median(cached), statistics.median(uncached)
        print(f"| {view}² | {refine} | {first.tiles} | {find * 1e3:.0f} | {mc * 1e3:.0f} | {mu * 1e3:.0f} "
              f"| {mc / mu:.2f} |", flush=True)


if __name__ == "__main__":
    main()
