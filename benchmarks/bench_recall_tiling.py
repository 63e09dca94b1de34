"""Find similar on large images: the whole image squeezed into one view vs tiles at one scale.

For each MOIS target (the targets and exemplar clicks of ``icmformer-eval --task mois``, seed
0) the shipped iCMFormer++ proposal (k = 0, no recall click) is scored by category IoU and
object F1; seconds = set_image + set_exemplar + recall on this machine. ``squeeze`` is the
paper's way (the whole image resized to the view); ``tile:S`` tiles images larger than the view
with the upsampling capped at S (the engine's ``TilingConfig.max_scale``). Choose on training
splits, check held out::

    python benchmarks/bench_recall_tiling.py --data-root ../shared/data \\
        --datasets "DSB2018[:50]" "MoNuSeg_whole[14:]" --configs squeeze tile:1 tile:1.5 tile:2 tile:3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from napari_icmformer.data.readers import open_dataset
from napari_icmformer.evaluation_mois import target_seed
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.metrics import instance_f1, iou
from napari_icmformer.mois import build_mois_targets, dios_clicks
from napari_icmformer.recall_views import TilingConfig


def make_config(spec: str, device: str) -> RecallConfig:
    if spec == "squeeze":
        return RecallConfig(device=device, tiling=TilingConfig(enabled=False))
    if spec.startswith("tile"):
        scale = spec.partition(":")[2]
        tiling = TilingConfig(max_scale=float(scale)) if scale else TilingConfig()
        return RecallConfig(device=device, tiling=tiling)
    raise SystemExit(f"unknown config {spec!r}: use squeeze, tile or tile:S")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--datasets", nargs="+", default=["MoNuSeg_whole[:14]", "DSB2018[50:]"])
    p.add_argument("--configs", nargs="+", default=["squeeze", "tile"])
    p.add_argument("--checkpoint", default=None, help="iCMFormer++ checkpoint (default: the shipped one)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    model = ExemplarPredictor.from_checkpoint(args.checkpoint, RecallConfig(device=args.device)).model
    recallers = {c: ExemplarPredictor(model, make_config(c, args.device)) for c in args.configs}
    print("| dataset | config | targets | tiles (mean) | IoU@0 | F1@0 | s / find similar |")
    print("|---|---|---|---|---|---|---|")
    for name in args.datasets:
        ds = open_dataset(name, args.data_root)
        rng = np.random.default_rng(0)
        rows: dict[str, list[tuple[float, float, float, int]]] = {c: [] for c in args.configs}
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        for i in tqdm(range(n), desc=name, leave=False):
            sample = ds[i]
            for t_index, target in enumerate(build_mois_targets(sample, rng)):
                clicks = dios_clicks(target.exemplar, np.random.default_rng(target_seed(0, i, t_index)))
                for spec, recaller in recallers.items():
                    t = time.perf_counter()
                    recaller.set_image(sample.image)
                    recaller.set_exemplar(target.exemplar, clicks)
                    res = recaller.recall()
                    seconds = time.perf_counter() - t
                    rows[spec].append((iou(res.mask, target.target, target.ignore),
                                       instance_f1(res.instances, target.instances, ignore=target.ignore),
                                       seconds, len(recaller.layout.origins)))
        for spec, vals in rows.items():
            if vals:
                a = np.asarray(vals, float)
                print(f"| {name} | {spec} | {len(a)} | {a[:, 3].mean():.1f} | {a[:, 0].mean():.3f} | "
                      f"{a[:, 1].mean():.3f} | {a[:, 2].mean():.2f} |", flush=True)


if __name__ == "__main__":
    main()
