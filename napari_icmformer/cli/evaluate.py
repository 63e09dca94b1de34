"""``icmformer-eval``: NoC / NoF / mIoU@k tables on the benchmarks, our model beside baselines.

    icmformer-eval --datasets GrabCut Berkeley --data-root ../shared/data --out results/
    icmformer-eval --task mois --datasets DSB2018 COCO_Tiny_val --data-root ../shared/data \
        --mois-checkpoint icmformer_pp.pt --out results/mois
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import CheckpointError
from ..data import DatasetError, open_dataset
from ..engine import Predictor, PredictorConfig
from ..evaluation import iter_dataset
from ..exemplar import RecallConfig
from ..metrics import summarize
from ..refine import GraphCutConfig
from ..runtime import DEFAULT_THRESHOLD
from ._args import OneLineParser, fail, float_in, int_in, output_folder
from .evaluate_mois import make_mois_methods, mois_report, run_mois
from .reporting import PROG, Report, RunLog, finish, markdown_table


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="icmformer-eval", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=["sois", "mois"], default="sois",
                   help="sois: one object per click session; mois: iCMFormer++ exemplar + recall (paper §4.4.2)")
    p.add_argument("--datasets", nargs="+", default=None,
                   help="default: GrabCut Berkeley (sois), DSB2018 COCO_Tiny_val (mois)")
    p.add_argument("--data-root", default=os.environ.get("ICMFORMER_DATA"),
                   help="folder holding the datasets (or env ICMFORMER_DATA)")
    p.add_argument("--checkpoint", action="append", default=[],
                   help="model checkpoint; repeat to compare several (default: the shipped one)")
    p.add_argument("--mois-checkpoint", action="append", default=[],
                   help="iCMFormer++ checkpoint (mois); repeat to compare, e.g. with a no-EIM ablation")
    p.add_argument("--mois-view", type=int_in(32, 8192), nargs="+", default=[RecallConfig.view],
                   help="iCMFormer++ network view size(s) in px; several compare them in one run")
    p.add_argument("--mois-update", nargs="+", default=[RecallConfig.update],
                   choices=["local", "global"], help="what a recall click may change; several compare them")
    p.add_argument("--mois-tiling", nargs="+", default=["on"], choices=["on", "off"],
                   help="tile images larger than the view (on, the default) or squeeze them whole (off); "
                        "both compare them")
    p.add_argument("--mois-mode", nargs="+", default=["additional", "collective"],
                   choices=["additional", "collective"])
    p.add_argument("--annotate-all", action="store_true",
                   help="mois: also the clicks until every object of the category is right (object F1 >= 0.9, "
                        "mean IoU >= 0.8, at most 2 clicks per object), one by one with iCMFormer vs Find "
                        "similar + fix clicks, in the same table")
    p.add_argument("--method", nargs="+", default=["icmformer", "random-walker"],
                   choices=["icmformer", "random-walker"])
    p.add_argument("--max-clicks", type=int_in(1, 1000), default=20)
    p.add_argument("--iou-thresholds", type=float_in(0.0, 1.0, low_open=True), nargs="+", default=[0.85, 0.90],
                   help="IoU targets of NoC / NoF, each in (0, 1]")
    p.add_argument("--zoom-in", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--flip", action="store_true")
    p.add_argument("--refine", nargs="+", default=[PredictorConfig.refine], choices=["graphcut", "none"],
                   help="iCMFormer refinement(s) to compare in one run (e.g. --refine graphcut none)")
    p.add_argument("--graphcut-pairwise", type=float, default=None, help="override GraphCutConfig.pairwise")
    p.add_argument("--graphcut-band", type=float, default=None, help="override GraphCutConfig.band")
    p.add_argument("--graphcut-feedback", choices=["network", "refined"], default=None,
                   help="override GraphCutConfig.feedback")
    p.add_argument("--limit", type=int_in(1), default=None, help="first N images of each dataset (N >= 1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    p.add_argument("--out", type=Path, default=Path("results"))
    return p


def make_methods(args) -> list[tuple[str, object]]:
    methods: list[tuple[str, object]] = []
    if "icmformer" in args.method:
        overrides = {k: v for k, v in (("pairwise", args.graphcut_pairwise), ("band", args.graphcut_band),
                                        ("feedback", args.graphcut_feedback)) if v is not None}
        graphcut = GraphCutConfig(**overrides)
        for ckpt in args.checkpoint or [None]:
            model = None
            for refine in args.refine:
                cfg = PredictorConfig(zoom_in=args.zoom_in, flip=args.flip, device=args.device, refine=refine,
                                      graphcut=graphcut)
                label = "icmformer-default" if ckpt is None else f"icmformer-{Path(ckpt).stem}"
                if len(args.refine) > 1 or refine != PredictorConfig.refine:
                    label += f" refine={refine}"
                if model is None:
                    predictor = Predictor.from_checkpoint(ckpt, cfg)
                    model = predictor.model
                else:
                    predictor = Predictor(model, cfg)
                methods.append((label, predictor))
    if "random-walker" in args.method:
        from ..baselines import RandomWalkerMethod  # noqa: PLC0415

        methods.append(("random-walker", RandomWalkerMethod()))
    return methods


def sois_report(args, rows: list[dict], per_object: list[dict]) -> Report:
    """The SOIS table (NoC, NoF, mIoU@1/5, seconds per click) and what goes beside it."""
    tags = [f"{round(t * 100)}" for t in args.iou_thresholds]
    cols = [f"NoC@{t}" for t in tags] + [f"NoF@{t}" for t in tags]
    cols += [f"mIoU@{k}" for k in (1, 5) if k <= args.max_clicks] + ["SPC"]

    def cell(r: dict, c: str) -> str:
        return f"{r[c]:.2f}" if "NoC" in c or "mIoU" in c else (f"{r[c]:.3f}" if c == "SPC" else str(r[c]))

    note = ("clicker: farthest-from-boundary point of the larger error region; ties -> negative (RITM); "
            f"threshold {DEFAULT_THRESHOLD}; zoom-in {'on' if args.zoom_in else 'off'}; "
            f"flip {'on' if args.flip else 'off'}")
    return Report(markdown_table(rows, "objects", cols, cell), [note], rows, "objects", per_object,
                  "per_object.json", {"rows": rows})


def run_sois(args, methods, datasets, log: RunLog) -> tuple[list[dict], list[dict]]:
    """Every method on every dataset; a sample that cannot be read or segmented is skipped and
    logged, and a Ctrl-C keeps what is finished: one bad sample never costs the whole run."""
    rows, per_object = [], []
    for label, method in methods:
        for name, ds in datasets:
            results: list = []
            try:
                for r in iter_dataset(method, ds, name, args.max_clicks, args.limit,
                                      on_skip=lambda i, sample, exc, label=label, name=name:
                                      log.skip(label, name, i, sample, exc)):
                    results.append(r)
            except KeyboardInterrupt:
                log.interrupted = True
            n_clicks = sum(len(r.clicks) for r in results)
            summary = summarize([r.ious for r in results], args.iou_thresholds, args.max_clicks,
                                sum(r.seconds for r in results), n_clicks)
            rows.append({"method": label, "dataset": name, **summary})
            per_object += [{"method": label, **r.__dict__} for r in results]
            if not results and not log.interrupted:
                log.nothing(name, "no object to click (every mask is empty or the samples were skipped)")
            if log.interrupted:
                return rows, per_object
    return rows, per_object


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.datasets is None:
        args.datasets = ["GrabCut", "Berkeley"] if args.task == "sois" else ["DSB2018", "COCO_Tiny_val"]
    try:
        output_folder(args.out, create=False)
        datasets = [(name, open_dataset(name, args.data_root)) for name in args.datasets]
        if args.task == "mois":
            predictor, recallers = make_mois_methods(args)
        else:
            methods = make_methods(args)
        output_folder(args.out)
    except (DatasetError, CheckpointError, ValueError) as exc:
        return fail(PROG, exc)
    log = RunLog()
    if args.task == "mois":
        report = mois_report(args, *run_mois(args, predictor, recallers, datasets, log))
    else:
        report = sois_report(args, *run_sois(args, methods, datasets, log))
    return finish(args.out, args, report, log)


if __name__ == "__main__":
    raise SystemExit(main())
