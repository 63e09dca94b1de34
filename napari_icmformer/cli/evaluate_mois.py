"""``icmformer-eval --task mois``: iCMFormer++ against the SOIS-only reference, same targets.

    icmformer-eval --task mois --datasets DSB2018 COCO_Tiny_val --data-root ../shared/data \\
        --mois-checkpoint icmformer_pp.pt --out results/mois

``--annotate-all`` adds the clicks until every object of the category is right, one by one vs
Find similar (``annotate_all.py``), as rows of the same table.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..annotate_all import annotate_find_similar, annotate_one_by_one, summarize_annotate_all
from ..engine import Predictor, PredictorConfig
from ..evaluation_mois import evaluate_mois_target, evaluate_sois_reference, summarize_mois, target_seed
from ..exemplar import ExemplarPredictor, RecallConfig
from ..mois import build_mois_targets
from ..recall_views import TilingConfig
from .reporting import Report, RunLog, markdown_table

ANNOTATE_ALL_COLUMNS = ["AA clicks/object", "AA done", "AA objects right", "AA F1 find similar", "AA s/target"]
ANNOTATE_ALL_NOTE = (
    "annotate all (AA): clicks until the category's objects are right (object F1 >= 0.9 at IoU > 0.5 and mean "
    "matched IoU >= 0.8) or 2 clicks per object are spent; clicks/object = all clicks / all objects; done = share "
    "of targets that got there; objects right = GT objects matched at the end; F1 find similar = exemplar + first "
    "proposals, before any fix click. one-by-one: iCMFormer per object until IoU >= 0.85 (<= 5 clicks); "
    "find-similar: exemplar by iCMFormer (counted) + Find similar + fix clicks on the worst error + iCMFormer on "
    "what is still missing (napari_icmformer/annotate_all.py)")
MOIS_NOTE = (
    "MOIS protocol: Alg. 1 targets (categories with ≥2 instances); additional = golden exemplar + DIOS "
    "clicks, only recall clicks count; collective = SOIS exemplar (≤5 clicks, stop at <1 % gain) counts; "
    "curves start at k = 0 (proposals before any counted click); F1 = object-level F1 of the instance "
    "split (IoU > 0.5) before the first counted recall click / after the last click")


def annotate_all_target(predictor, recallers: list[tuple[str, object]], image: np.ndarray, target,
                        out: dict[str, list]) -> None:
    """The annotate-all protocol on one target: one by one (once) and Find similar per recaller."""
    out.setdefault("annotate-all one-by-one (icmformer)", []).append(annotate_one_by_one(predictor, image, target))
    for label, recaller in recallers:
        out.setdefault(f"annotate-all find-similar {label}", []).append(
            annotate_find_similar(predictor, recaller, image, target))


def make_mois_methods(args) -> tuple[Predictor, list[tuple[str, ExemplarPredictor]]]:
    """The iCMFormer predictor (SOIS-only reference, collective exemplars, annotate-all) and one
    recaller per iCMFormer++ checkpoint x view x update x tiling, each model loaded once."""
    cfg = PredictorConfig(zoom_in=args.zoom_in, flip=args.flip, device=args.device)
    predictor = Predictor.from_checkpoint(args.checkpoint[0] if args.checkpoint else None, cfg)
    recallers = []
    for ckpt in args.mois_checkpoint or [None]:
        label = "icmformer++-default" if ckpt is None else f"icmformer++-{Path(ckpt).stem}"
        model = ExemplarPredictor.from_checkpoint(ckpt, RecallConfig(device=args.device)).model  # loaded once
        for view, update, tiling in itertools.product(args.mois_view, args.mois_update, args.mois_tiling):
            config = RecallConfig(device=args.device, view=view, update=update,
                                  tiling=TilingConfig(enabled=tiling == "on"))
            tag = "" if len(args.mois_tiling) == 1 else (" tiled" if tiling == "on" else " squeezed")
            recallers.append((f"{label}@{view} {update}{tag}", ExemplarPredictor(model, config)))
    return predictor, recallers


def evaluate_sample(args, predictor, recallers, sample, index: int, rng: np.random.Generator,
                    results: dict[str, list], annotated: dict[str, list]) -> None:
    """Every method on every MOIS target of one image, added to ``results`` / ``annotated`` only
    when the whole image is done (so a skipped image leaves no partial rows)."""
    done: dict[str, list] = {}
    done_aa: dict[str, list] = {}
    for t_index, target in enumerate(build_mois_targets(sample, rng)):
        seed = target_seed(args.seed, index, t_index)
        done.setdefault("sois-only", []).append(
            evaluate_sois_reference(predictor, sample.image, target, args.max_clicks,
                                    config=recallers[0][1].config if recallers else None))
        for label, recaller in recallers:
            for mode in args.mois_mode:
                res = evaluate_mois_target(recaller, predictor, sample.image, target, mode, args.max_clicks, seed)
                done.setdefault(f"{label} ({mode})", []).append(res)
        if args.annotate_all:
            annotate_all_target(predictor, recallers, sample.image, target, done_aa)
    for into, new in ((results, done), (annotated, done_aa)):
        for method, res in new.items():
            into.setdefault(method, []).extend(res)


def run_mois(args, predictor, recallers, datasets: list[tuple[str, object]],
             log: RunLog) -> tuple[list[dict], list[dict]]:
    """The MOIS rows and per-target records; an image that cannot be read or evaluated is skipped
    and logged, and a Ctrl-C keeps the images finished."""
    rows, per_target = [], []
    for name, ds in datasets:
        rng = np.random.default_rng(args.seed)
        results: dict[str, list] = {}
        annotated: dict[str, list] = {}
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        try:
            for i in tqdm(range(n), desc=f"MOIS {name}", dynamic_ncols=True):
                sample_name = f"#{i}"
                try:
                    sample = ds[i]
                    sample_name = sample.name
                    evaluate_sample(args, predictor, recallers, sample, i, rng, results, annotated)
                except ValueError as exc:  # DatasetError included: an unreadable or unusable image
                    log.skip("all", name, i, sample_name, exc)
        except KeyboardInterrupt:
            log.interrupted = True
        if not results and not log.interrupted:
            log.nothing(name, "no MOIS target: no image has two or more objects of one category "
                              "(or the images were skipped)")
        ref_noc = None
        for method, res in results.items():
            summary = summarize_mois(res, args.iou_thresholds, args.max_clicks)
            summary["SPC"] = sum(r.seconds for r in res) / max(1, sum(len(r.ious) for r in res))
            if method == "sois-only":
                ref_noc = summary
            rows.append({"method": method, "dataset": name, **summary})
            per_target += [{"method": method, "dataset": name, **r.__dict__} for r in res]
        tag = f"NoC@{round(args.iou_thresholds[-1] * 100)}"
        for row in rows:
            if row["dataset"] == name and ref_noc is not None and ref_noc[tag]:
                row[f"{tag} vs SOIS-only"] = row[tag] / ref_noc[tag]
        for method, res in annotated.items():  # after the paper's rows, in the same table
            rows.append({"method": method, "dataset": name, **summarize_annotate_all(res)})
            per_target += [{"method": method, "dataset": name, **r.__dict__} for r in res]
        if log.interrupted:
            break
    return rows, per_target


def mois_report(args, rows: list[dict], per_target: list[dict]) -> Report:
    """The MOIS table (NoC, NoFI, mIoU+, instance F1, ratio to SOIS-only; annotate-all columns)."""
    tags = [f"{round(t * 100)}" for t in args.iou_thresholds]
    ratio = f"NoC@{tags[-1]} vs SOIS-only"
    cols = [f"NoC@{t}" for t in tags] + [f"NoFI@{t}" for t in tags] + ["mIoU+@0", "mIoU+@5", "F1@start",
                                                                        "F1@end", ratio]
    if args.annotate_all:
        cols += ANNOTATE_ALL_COLUMNS

    def cell(r: dict, c: str) -> str:
        return "—" if c not in r else f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c])

    notes = ([ANNOTATE_ALL_NOTE] if args.annotate_all else []) + [MOIS_NOTE]
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("method", "dataset"), k))
    curve = {"rows": [r for r in rows if "mIoU+@0" in r], "metric": "mIoU+", "first_k": 0,
             "xlabel": "number of counted clicks", "ylabel": "mIoU of the category target"}
    return Report(markdown_table(rows, "targets", cols, cell), notes, rows, "targets", per_target,
                  "per_target.json", curve, fields)
