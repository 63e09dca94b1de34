"""Adapt the models to the user's images: a short fine-tune on the objects they committed.

Both models are fine-tuned with the project's own trainers (``training.trainer.Trainer`` for
iCMFormer, ``training.mois_trainer.MoisTrainer`` for iCMFormer++ when the images hold several
objects), on a pool built from the user's images in memory, for a bounded time. Part of the
objects is held out (``adapt_data.split_objects``); they are scored before training and a few
times during it, and the best scoring weights are kept — the starting weights when no step
beats them. SOIS is scored by the click simulation of ``evaluation.evaluate_object`` (NoC@85,
mIoU@3, through the engine's defaults), Find similar by the MOIS protocol of
``evaluation_mois.evaluate_mois_target`` (golden exemplar, object F1 of the first proposals).

Qt-free: the CLI (``icmformer-adapt``) and the widget call :func:`adapt` with a progress and a
cancel callback; nothing is written until :meth:`AdaptResult.save`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .adapt_data import AdaptInputError, AnnotatedImage, Split, split_objects
from .checkpoints import load_model, save_checkpoint
from .data import Sample
from .data.readers import LabelMasks
from .engine import Predictor, PredictorConfig
from .evaluation import evaluate_object
from .evaluation_mois import evaluate_mois_target, target_seed
from .exemplar import ExemplarPredictor, RecallConfig
from .metrics import noc, summarize
from .mois import MoisTarget
from .training.dataset import ObjectPool
from .training.mois_trainer import make_trainer
from .training.trainer import TrainConfig, Trainer, _no_interrupt
from .weights import default_checkpoint

SOIS_FILE, MOIS_FILE, REPORT_FILE = "icmformer_adapted.pt", "icmformer_pp_adapted.pt", "adapt_report.json"
# frozen in train_layers="late": the image-only front end (patch embedding and the blocks before
# the click stream joins), which the network learned from 2,200 images; the EIM's ResNet trunk
FRONT_END = re.compile(r"(^|\.)(backbone\.patch_embed\.|backbone\.pos_embed$|eim\.trunk\.)")


@dataclass
class AdaptConfig:
    """The recipe (chosen on held-out parts of the adaptation images, BENCHMARKS.md)."""

    minutes: float = 3.0  # time of the whole run: scoring, training, both models
    clock: str = "wall"  # "wall", or "cpu": this process's CPU time (benchmarks on a shared machine)
    sois_checkpoint: str | None = None  # None = the shipped default
    mois_checkpoint: str | None = None
    mois: str = "auto"  # "auto": when the images hold several objects; "on"; "off"
    mois_share: float = 0.4  # of the time, for iCMFormer++
    held_out: float = 0.25  # share of each image's objects held out to score
    lr: float = 1e-4
    warmup: int = 8  # steps of linear warm-up (a fresh AdamW's first steps move every weight by ~lr)
    mois_lr: float = 1e-4
    batch_size: int = 8
    mois_batch_size: int = 4
    train_layers: str = "all"  # "all" or "late" (front end frozen, see FRONT_END)
    max_iter_clicks: int = 3
    copy_paste: float = 0.0
    # smallest training crop around an object (dataset.random_view): 24 = the shipped training's;
    # 200 (the engine's zoom-in crop) made the first clicks worse on DSB2018's held-out objects
    view_min_side: float = 24
    # adapted weights replace the starting ones only when their held-out score beats the start by
    # at least this much (NoC@85 clicks / object F1): on DSB2018 a +0.004 held-out F1 "gain" came
    # with -0.19 F1 on the user's other images, a few held-out targets cannot tell noise apart;
    # iCMFormer's held-out gains (NoC@85, then mIoU@3 on a tie) did carry over to other images
    sois_min_gain: float = 0.0
    mois_min_gain: float = 0.02
    # "margin": a step replaces the start when its held-out score beats the start's by the
    # min_gain above; "paired": also only when the mean per-object gain over the same held-out
    # objects exceeds its standard error (a dozen objects give an SE near a click on NoC@85: a
    # 0.17-click "gain" on MoNuSeg cost +1.1 clicks on the user's other tiles). One run per nuclei
    # set (BENCHMARKS.md "Adapt"): it removed that loss, not DSB2018's iCMFormer++ one; not the
    # default yet.
    selection: str = "margin"
    scores: int = 2  # held-out scorings during each model's training (plus one before)
    score_objects: int = 12  # at most this many held-out objects are clicked (SOIS)
    score_clicks: int = 8  # click budget of the SOIS scoring (NoC@85 is capped there)
    exemplars: int = 3  # Find-similar exemplars per held-out part
    max_side: int = 1024  # images are trained on up to this size (the engine's max_view)
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.minutes, (int, float)) and math.isfinite(self.minutes) and self.minutes > 0):
            raise ValueError(f"minutes must be a positive number, got {self.minutes!r}")
        if self.clock not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {self.clock!r}")
        if self.mois not in ("auto", "on", "off"):
            raise ValueError(f"mois must be 'auto', 'on' or 'off', got {self.mois!r}")
        if self.selection not in ("margin", "paired"):
            raise ValueError(f"selection must be 'margin' or 'paired', got {self.selection!r}")
        if self.train_layers not in ("all", "late"):
            raise ValueError(f"train_layers must be 'all' or 'late', got {self.train_layers!r}")
        for name in ("sois_min_gain", "mois_min_gain"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not 0 < self.held_out < 1 or not 0 <= self.mois_share < 1:
            raise ValueError("held_out must be in (0, 1) and mois_share in [0, 1)")


@dataclass
class AdaptProgress:
    """What a progress callback gets: the phase, the share of the time budget spent, a line."""

    phase: str  # "iCMFormer" / "iCMFormer++"
    fraction: float
    step: int
    message: str


class AdaptCancelled(Exception):
    """The cancel callback asked to stop: nothing was kept or written."""


@dataclass
class AdaptResult:
    """The adapted models (in memory) and the report; :meth:`save` writes them."""

    report: dict[str, Any]
    sois_model: torch.nn.Module
    mois_model: torch.nn.Module | None = None
    paths: dict[str, Path] = field(default_factory=dict)

    def save(self, out_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
        """Checkpoints (``checkpoints.py`` format) + ``adapt_report.json`` in ``out_dir``; an
        existing file is refused unless ``overwrite``. Each file is written under a temporary
        name and renamed, with Ctrl-C deferred, so an interrupt never leaves half a file."""
        out = Path(out_dir)
        names = {"sois": out / SOIS_FILE, "report": out / REPORT_FILE}
        if self.mois_model is not None:
            names["mois"] = out / MOIS_FILE
        existing = [p.name for p in names.values() if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(f"{out} already holds {', '.join(existing)}: choose another folder or overwrite")
        out.mkdir(parents=True, exist_ok=True)
        report = {**self.report, "files": {k: str(p) for k, p in names.items()}}
        with _no_interrupt():
            save_checkpoint(names["sois"], self.sois_model, extra={"adaptation": _brief(report, "sois")})
            if self.mois_model is not None:
                save_checkpoint(names["mois"], self.mois_model, extra={"adaptation": _brief(report, "mois")})
            tmp = names["report"].with_name(f".{REPORT_FILE}.tmp")
            tmp.write_text(json.dumps(report, indent=1))
            os.replace(tmp, names["report"])
        self.report, self.paths = report, names
        return names


def _brief(report: dict, task: str) -> dict:
    """What a checkpoint carries about its adaptation (plain types: safe loading reads it)."""
    part = report.get(task, {})
    return {"from": part.get("from"), "objects": report.get("objects"), "before": part.get("before"),
            "after": part.get("after"), "steps": part.get("steps"), "best_step": part.get("best_step")}


# -- scoring on the held-out objects ------------------------------------------------------------
def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise AdaptCancelled("adaptation cancelled")


def sois_objects(split: Split, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, mask) of the held-out objects wholly inside their part, spread over the parts."""
    per_part = [[(part.image, part.labels == k) for k in ids] for part, ids in zip(split.held_out, split.whole,
                                                                                   strict=True)]
    out: list[tuple[np.ndarray, np.ndarray]] = []
    while len(out) < limit and any(per_part):
        for items in per_part:  # round robin: every part counts
            if items and len(out) < limit:
                out.append(items.pop(0))
    return out


@torch.no_grad()
def score_sois(model: torch.nn.Module, objects: list[tuple[np.ndarray, np.ndarray]], max_clicks: int,
               device: str = "cpu", should_stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """NoC@85/90 and mIoU@1/3/5 of ``model`` on the held-out objects, through the engine's
    defaults (graph cut, small-object zoom): the path the user clicks through. Scored by the
    network alone, a MoNuSeg step that gained 1.6 held-out clicks cost 1.5 on the other tiles."""
    was_training = model.training
    predictor = Predictor(model.eval(), PredictorConfig(device=device, precision="fp32"))
    curves = []
    last = None
    for image, mask in objects:
        _check_stop(should_stop)
        if image is not last:
            predictor.set_image(image)
            last = image
        curves.append(evaluate_object(predictor, mask, None, max_clicks)[0])
    model.train(was_training)
    s = summarize(curves, (0.85, 0.90), max_clicks)
    return {"objects": len(curves), "NoC@85": s["NoC@85"], "NoC@90": s["NoC@90"], "mIoU@1": s["mIoU@1"],
            "mIoU@3": s[f"mIoU@{min(3, max_clicks)}"], "mIoU@5": s[f"mIoU@{min(5, max_clicks)}"],
            "each": [float(noc(c, 0.85, max_clicks)) for c in curves]}  # per object, for paired selection


def mois_targets(split: Split, exemplars: int, seed: int) -> list[tuple[np.ndarray, MoisTarget, int]]:
    """(image, target, DIOS seed) of each held-out part with ≥ 2 objects: the category target is
    every object of the part, the exemplar one wholly inside it (``exemplars`` of them)."""
    out = []
    for p, (part, ids) in enumerate(zip(split.held_out, split.whole, strict=True)):
        masks = LabelMasks(part.labels)
        if len(masks) < 2 or not ids:
            continue
        rng = np.random.default_rng([seed, p])
        picks = rng.choice(ids, size=min(exemplars, len(ids)), replace=False)
        instances = [masks[i] for i in range(len(masks))]
        for j, e in enumerate(picks):
            index = masks.ids.index(int(e))
            out.append((part.image, MoisTarget(part.name, 1, index, instances), target_seed(seed, p, j)))
    return out


@torch.no_grad()
def score_mois(model: torch.nn.Module, targets: list[tuple[np.ndarray, MoisTarget, int]], device: str = "cpu",
               should_stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Find similar's object F1 (IoU > 0.5) and category IoU from a golden exemplar, no click."""
    was_training = model.training
    recaller = ExemplarPredictor(model.eval(), RecallConfig(device=device, precision="fp32"))
    f1, ious = [], []
    for image, target, seed in targets:
        _check_stop(should_stop)
        res = evaluate_mois_target(recaller, None, image, target, "additional", 0, seed)
        f1.append(res.instance_f1[0])
        ious.append(res.ious[0])
    model.train(was_training)
    return {"targets": len(f1), "F1": float(np.mean(f1)), "IoU": float(np.mean(ious)),
            "each": [-float(v) for v in f1]}  # per target, lower is better (as NoC), for paired selection


def paired_gain(before: list[float], after: list[float]) -> tuple[float, float]:
    """Mean per-object gain of ``after`` over ``before`` (lower scores are better) and its standard
    error; the error is infinite below two objects (one object cannot tell a gain from noise)."""
    d = np.asarray(before, float) - np.asarray(after, float)
    if len(d) < 2:
        return (float(d.mean()) if len(d) else 0.0), math.inf
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


# -- training -------------------------------------------------------------------------------------
def _pool(items: list[AnnotatedImage], max_side: int, min_area: int) -> ObjectPool:
    pool = ObjectPool(max_side=max_side, min_area=min_area)
    for t in items:
        masks = LabelMasks(t.labels)
        pool.add_sample(Sample(t.name, t.image, masks, [1] * len(masks)), "user")
    return pool


def _freeze_front_end(model: torch.nn.Module) -> int:
    """Freeze the image-only front end; returns how many tensors were frozen."""
    cfg = model.cfg
    blocks = re.compile(rf"(^|\.)backbone\.blocks\.({'|'.join(str(i) for i in range(cfg.split_depth))})\.")
    frozen = 0
    for name, p in model.named_parameters():
        if FRONT_END.search(name) or blocks.search(name):
            p.requires_grad_(False)
            frozen += 1
    return frozen


def _make_trainer(checkpoint: str, pool: ObjectPool, cfg: AdaptConfig, run_dir: str, mois: bool) -> Trainer:
    img_size = load_model(checkpoint).cfg.img_size
    tc = TrainConfig(task="mois" if mois else "sois", init_from=checkpoint, img_size=img_size, val_dataset=None,
                     out_dir=run_dir,
                     batch_size=cfg.mois_batch_size if mois else cfg.batch_size,
                     lr=cfg.mois_lr if mois else cfg.lr, warmup=cfg.warmup, iterations=1000,
                     max_iter_clicks=cfg.max_iter_clicks, copy_paste=cfg.copy_paste, device=cfg.device,
                     seed=cfg.seed, max_side=cfg.max_side)
    trainer = make_trainer(tc, pool)
    trainer.view_min_side = cfg.view_min_side
    if cfg.train_layers == "late":
        _freeze_front_end(trainer.model)
    return trainer


def _fine_tune(trainer: Trainer, score: Callable[[torch.nn.Module], dict], key: Callable[[dict], tuple],
               seconds: float, cfg: AdaptConfig, tick: Callable[[int, str], None],
               clock: Callable[[], float] = time.monotonic, min_gain: float = 0.0) -> dict[str, Any]:
    """Train for about ``seconds`` (scoring included), keeping the best-scoring weights; a step
    replaces the start only when the key's first element beats the start's by ``min_gain`` and,
    with ``cfg.selection == "paired"``, its per-object gain (``"each"``) beats its standard error."""
    t0 = clock()
    before = score(trainer.model)
    score_s = clock() - t0
    bar = key(before)[0] - min_gain  # what a step's first key element must reach to replace the start
    best = {"key": key(before), "state": copy.deepcopy(trainer.model.state_dict()), "step": 0, "metrics": before}
    history = [{"step": 0, "seconds": round(score_s, 1), **before}]
    left = seconds - score_s
    n_scores = max(1, min(cfg.scores, int(0.5 * left / max(score_s, 1e-3))))
    losses: list[float] = []
    step_s = None
    deadline = t0 + seconds
    for r in range(n_scores):
        scores_left = n_scores - r
        chunk_end = clock() + (deadline - clock() - scores_left * score_s) / scores_left
        while True:  # at least one step per chunk, however short the budget
            t = clock()
            losses.append(trainer.train_step())
            dt = clock() - t
            step_s = dt if step_s is None else 0.8 * step_s + 0.2 * dt
            # the cosine schedule ends where the time does: steps left at the current pace
            train_left = max(0.0, deadline - clock() - scores_left * score_s)
            trainer.cfg.iterations = trainer.step + 1 + int(train_left / step_s)
            tick(trainer.step, f"step {trainer.step}, loss {np.mean(losses[-10:]):.3f}")
            if clock() + step_s / 2 >= chunk_end:
                break
        metrics = score(trainer.model)
        history.append({"step": trainer.step, "seconds": round(clock() - t0, 1), **metrics})
        k = key(metrics)
        if cfg.selection == "paired":
            gain, se = paired_gain(before.get("each", []), metrics.get("each", []))
            clear_gain = gain > max(se, min_gain)
        else:
            clear_gain = True
        if k < best["key"] and k[0] <= bar and clear_gain:
            best = {"key": k, "state": copy.deepcopy(trainer.model.state_dict()),
                    "step": trainer.step, "metrics": metrics}
    trainer.model.load_state_dict(best["state"])
    trainer.model.eval()
    return {"steps": trainer.step, "best_step": best["step"], "before": before, "after": best["metrics"],
            "improved": best["step"] > 0, "seconds": round(clock() - t0, 1),
            "step_seconds": round(step_s or 0.0, 2), "loss_first": losses[0] if losses else None,
            "loss_last": float(np.mean(losses[-10:])) if losses else None, "history": history}


def mois_applicable(split: Split) -> str | None:
    """Why iCMFormer++ cannot be adapted on this split (None when it can)."""
    if not any(t.n_objects >= 2 for t in split.train):
        return "no training image (part) holds two or more objects"
    if not any(len(w) and t.n_objects >= 2 for t, w in zip(split.held_out, split.whole, strict=True)):
        return "no held-out part holds two or more objects to score Find similar on"
    return None


def adapt(images: list[AnnotatedImage], config: AdaptConfig | None = None, *,
          on_progress: Callable[[AdaptProgress], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> AdaptResult:
    """Fine-tune iCMFormer (and iCMFormer++ when the images hold several objects each) on the
    user's objects for ``config.minutes``; returns the best held-out weights and the report.

    Raises ``AdaptInputError`` for too few objects (the message says how many are needed),
    ``CheckpointError`` for an unusable starting checkpoint, :class:`AdaptCancelled` when
    ``should_stop()`` turns true (checked between steps and scored objects)."""
    cfg = config or AdaptConfig()
    split = split_objects(images, cfg.held_out)
    clock = time.process_time if cfg.clock == "cpu" else time.monotonic
    start, wall_start = clock(), time.monotonic()
    budget = cfg.minutes * 60.0
    why_not = mois_applicable(split) if cfg.mois != "off" else "off"
    if cfg.mois == "on" and why_not:
        raise AdaptInputError(f"cannot adapt iCMFormer++: {why_not}")
    sois_ckpt = str(cfg.sois_checkpoint or default_checkpoint("sois"))
    report: dict[str, Any] = {
        "config": asdict(cfg),
        "objects": {"images": len(images), "train": split.n_train, "held_out": split.n_held_out},
        "protocol": {"sois": f"held-out objects, simulated clicks (evaluation.evaluate_object), the engine's "
                             f"defaults, {cfg.score_clicks} clicks at most",
                     "mois": "held-out parts, golden exemplar + DIOS clicks, object F1 (IoU > 0.5) of the "
                             "first Find-similar proposals (evaluation_mois, additional mode, no recall click)"},
    }

    def ticker(phase: str):
        def tick(step: int, message: str) -> None:
            _check_stop(should_stop)
            if on_progress is not None:
                frac = min(1.0, (clock() - start) / budget)
                on_progress(AdaptProgress(phase, frac, step, f"{phase}: {message}"))
        return tick

    def stop_and_tick(phase: str):
        def check() -> bool:
            if on_progress is not None:
                on_progress(AdaptProgress(phase, min(1.0, (clock() - start) / budget), -1,
                                          f"{phase}: scoring the held-out objects"))
            return bool(should_stop is not None and should_stop())
        return check

    sois_budget = budget * (1 - cfg.mois_share) if not why_not else budget
    objects = sois_objects(split, cfg.score_objects)
    with tempfile.TemporaryDirectory(prefix="icmformer-adapt-") as run_dir:
        trainer = _make_trainer(sois_ckpt, _pool(split.train, cfg.max_side, 16), cfg, run_dir, False)
        check = stop_and_tick("iCMFormer")
        sois = _fine_tune(trainer, lambda m: score_sois(m, objects, cfg.score_clicks, cfg.device, check),
                          lambda s: (s["NoC@85"], -s["mIoU@3"]), sois_budget, cfg, ticker("iCMFormer"), clock,
                          cfg.sois_min_gain)
        report["sois"] = {"from": sois_ckpt, **sois}
        sois_model = trainer.model
        mois_model = None
        if why_not:
            report["mois"] = {"skipped": why_not}
        else:
            mois_ckpt = str(cfg.mois_checkpoint or default_checkpoint("mois"))
            targets = mois_targets(split, cfg.exemplars, cfg.seed)
            trainer = _make_trainer(mois_ckpt, _pool(split.train, cfg.max_side, 4), cfg, run_dir, True)
            check = stop_and_tick("iCMFormer++")
            left = budget - (clock() - start)
            mois = _fine_tune(trainer, lambda m: score_mois(m, targets, cfg.device, check),
                              lambda s: (-s["F1"], -s["IoU"]), left, cfg, ticker("iCMFormer++"), clock,
                              cfg.mois_min_gain)
            report["mois"] = {"from": mois_ckpt, **mois}
            mois_model = trainer.model
    report["seconds"] = round(clock() - start, 1)  # on cfg.clock
    report["wall_seconds"] = round(time.monotonic() - wall_start, 1)
    if on_progress is not None:
        on_progress(AdaptProgress("done", 1.0, -1, summary_line(report)))
    return AdaptResult(report, sois_model, mois_model)


def summary_line(report: dict[str, Any]) -> str:
    """One line for a status bar: the held-out gain of each adapted model."""
    parts = []
    s = report.get("sois", {})
    if "before" in s:
        b, a = s["before"], s["after"]
        parts.append(f"iCMFormer NoC@85 {b['NoC@85']:.2f} → {a['NoC@85']:.2f}, mIoU@3 {b['mIoU@3']:.3f} → "
                     f"{a['mIoU@3']:.3f}" + ("" if s.get("improved") else " (no gain: the starting weights kept)"))
    m = report.get("mois", {})
    if "before" in m:
        parts.append(f"Find similar F1 {m['before']['F1']:.3f} → {m['after']['F1']:.3f}"
                     + ("" if m.get("improved") else " (no gain: the starting weights kept)"))
    elif "skipped" in m:
        parts.append(f"iCMFormer++ not adapted ({m['skipped']})")
    objs = report.get("objects", {})
    return (f"held out {objs.get('held_out', 0)} of {objs.get('held_out', 0) + objs.get('train', 0)} objects: "
            + "; ".join(parts))
