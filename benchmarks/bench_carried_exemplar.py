"""Find similar with an exemplar carried forward from another image vs from the same image.

For every image of a split: the golden exemplar of its MOIS target (``icmformer-eval --task
mois``: same targets, same DIOS exemplar clicks) recalls the category on its own image
(``set_exemplar``), and the previous image's exemplar (the last image's for the first) recalls
it across images (``set_exemplar_from``, what *Find similar here* / ``icmformer-batch`` do).
Reported: object F1 (IoU > 0.5) of the proposals before any click, against every GT object of
the image, and the seconds per image (set_image + exemplar + recall, warm model)::

    OMP_NUM_THREADS=1 python benchmarks/bench_carried_exemplar.py --data-root ../shared/data \\
        --datasets "DSB2018[50:]" "MoNuSeg[:56]" --out results/carried
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from napari_icmformer.data.readers import open_dataset
from napari_icmformer.evaluation_mois import target_seed
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.metrics import instance_f1
from napari_icmformer.mois import build_mois_targets, dios_clicks


def run(recaller: ExemplarPredictor, name: str, data_root: str, limit: int | None) -> list[dict]:
    ds = open_dataset(name, data_root)
    n = len(ds) if limit is None else min(limit, len(ds))
    rng = np.random.default_rng(0)
    items = []  # (name, image, target, exemplar clicks)
    for i in range(n):
        sample = ds[i]
        targets = build_mois_targets(sample, rng)
        if targets:  # one category in these sets: one target per image
            target = targets[0]
            clicks = dios_clicks(target.exemplar, np.random.default_rng(target_seed(0, i, 0)))
            items.append((sample.name, sample.image, target, clicks))
    rows = []
    for k, (sname, image, target, clicks) in enumerate(tqdm(items, desc=name, dynamic_ncols=True)):
        _, ex_image, ex_target, ex_clicks = items[k - 1]  # the previous image's exemplar
        row = {"dataset": name, "sample": sname, "objects": len(target.instances),
               "exemplar_from": items[k - 1][0]}
        t = time.perf_counter()
        recaller.set_image(image)
        recaller.set_exemplar(target.exemplar, clicks)
        same = recaller.recall()
        row["same_s"] = time.perf_counter() - t
        row["same_f1"] = instance_f1(same.instances, target.instances, ignore=target.ignore)
        row["same_tiles"] = same.tiles
        t = time.perf_counter()
        recaller.set_image(image)
        recaller.set_exemplar_from(ex_image, ex_target.exemplar, ex_clicks)
        other = recaller.recall()
        row["other_s"] = time.perf_counter() - t
        row["other_f1"] = instance_f1(other.instances, target.instances, ignore=target.ignore)
        row["other_tiles"] = other.tiles
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--datasets", nargs="+", default=["DSB2018[50:]", "MoNuSeg[:56]"])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--checkpoint", default=None, help="iCMFormer++ checkpoint (default: the shipped one)")
    p.add_argument("--out", type=Path, default=None, help="folder for per_image.json")
    args = p.parse_args()
    recaller = ExemplarPredictor.from_checkpoint(args.checkpoint, RecallConfig(device="cpu"))
    rows = []
    for name in args.datasets:
        rows += run(recaller, name, args.data_root, args.limit)
    print("| dataset | images | exemplar | object F1 | s / image | views / image |")
    print("|---|---|---|---|---|---|")
    for name in args.datasets:
        rs = [r for r in rows if r["dataset"] == name]
        for tag, label in (("same", "same image"), ("other", "previous image (carried)")):
            print(f"| {name} | {len(rs)} | {label} | {np.mean([r[f'{tag}_f1'] for r in rs]):.3f} | "
                  f"{np.mean([r[f'{tag}_s'] for r in rs]):.2f} | {np.mean([r[f'{tag}_tiles'] for r in rs]):.1f} |")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "per_image.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
