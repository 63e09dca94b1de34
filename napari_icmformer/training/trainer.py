"""The training loop: iterative click simulation, NFL, AdamW, checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from src_models import NormalizedFocalLoss, build_model, coord_maps, get_config, resize_input

from ..checkpoints import CheckpointError, load_model, save_checkpoint
from ..clicking import sample_error_click
from ..runtime import DEFAULT_THRESHOLD
from .config_checks import check_train_config
from .dataset import ObjectPool, collate_points, make_training_sample
from .distributed import init_distributed
from .validation import ValidationSet

SOIS_DATASETS = ["COCO_MVal_train", "COCO_Tiny_train", "WeizmannHorse", "PennFudanPed", "MSRC_v2", "CamVid",
                 "DSB2018", "EPFL_EM", "MoNuSeg"]
# MOIS needs several instances of one category per image: the instance-annotated sets
MOIS_DATASETS = ["DSB2018", "MoNuSeg", "EPFL_EM", "PennFudanPed", "COCO_Tiny_train"]


@dataclass
class TrainConfig:
    """Defaults are the CPU recipe of the shipped default (vit_tiny at 224)."""

    # "sois": iCMFormer on single objects; "mois": iCMFormer++ on exemplar + category targets
    # (recorded in every checkpoint's train_config, settable from a YAML file)
    task: str = "sois"
    model: str = "vit_tiny"
    model_overrides: dict = field(default_factory=dict)  # extra ModelConfig fields (YAML only)
    img_size: int = 224
    # None = the task's default (SOIS_DATASETS / MOIS_DATASETS), filled in when the config is made:
    # dataclasses.replace(cfg, task=...) keeps the list already there
    datasets: list[str] | None = None
    data_root: str | None = None
    iterations: int = 10000
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup: int = 300
    max_iter_clicks: int = 3  # 0..N clicks from the model's own errors per sample (corrections)
    copy_paste: float = 0.0  # probability of a copy-paste augmentation per sample (dataset.copy_paste)
    # MOIS: probability that a sample gets instances of another kind (dataset or category) pasted
    # in, the target being either kind: the exemplar decides (mois_dataset.paste_other_kind)
    other_kinds: float = 0.0
    device: str = "cpu"
    amp: bool = True  # bf16 autocast on GPU only
    seed: int = 0
    out_dir: str = "runs/default"
    save_every: int = 250
    threads: int = 0  # torch CPU threads; 0 = torch default
    workers: int = 0  # DataLoader processes preparing batches; 0 = in the training process
    init_from: str | None = None  # start from an existing checkpoint's weights
    max_side: int = 384
    limit_per_dataset: int | None = None
    # validation on held-out data (never a benchmark) picks best.pt: SOIS NoC, or for MOIS the
    # category-target NoC then mIoU+@5 (golden exemplar, recall clicks)
    # "auto" = COCO_Tiny_val when data_root is set, else no validation; or names / folders (the
    # objects are shared out among them: hold out every kind of image you train on); None = off
    val_dataset: str | list[str] | None = "auto"
    val_every: int = 500
    val_objects: int = 40
    val_max_clicks: int = 10
    val_min_area: int = 1024

    def __post_init__(self) -> None:
        if self.datasets is None and self.task in ("sois", "mois"):
            self.datasets = list(MOIS_DATASETS if self.task == "mois" else SOIS_DATASETS)
        check_train_config(self)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up then cosine decay to 1 % of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.iterations - cfg.warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


@contextlib.contextmanager
def _no_interrupt():
    """Defer SIGINT while a checkpoint pair is written (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []
    previous = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


class StepBatches(torch.utils.data.Dataset):
    """Item ``step`` is the batch of that training step, drawn with its own RNG seeded by
    (seed, rank, step): any DataLoader worker can prepare any step, every DDP rank draws its own
    samples, and a resumed run draws exactly the batches the uninterrupted run would have."""

    def __init__(self, draw: Callable[[np.random.Generator], tuple], seed: int, rank: int) -> None:
        self.draw, self.seed, self.rank = draw, seed, rank

    def __getitem__(self, step: int) -> tuple:
        return self.draw(np.random.default_rng([self.seed, self.rank, int(step)]))


def at_input_size(model: torch.nn.Module, img_size: int) -> torch.nn.Module:
    """``--init-from`` weights trained at another input size, rebuilt for ``img_size`` (position
    embedding resampled), so the saved checkpoint says the size it was trained at."""
    if model.cfg.img_size != img_size:
        tqdm.write(f"init-from: input {model.cfg.img_size}² -> {img_size}² (position embedding resampled)")
        model = resize_input(model, img_size)
    return model


def _one_thread(_worker: int) -> None:
    """A data worker uses one torch thread: the training process keeps the cores."""
    torch.set_num_threads(1)


def _rng_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate()}


class Trainer:
    def __init__(self, cfg: TrainConfig, pool: ObjectPool | None = None) -> None:
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.dist, self.device = init_distributed(cfg.device)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts them)
        random.seed(cfg.seed)
        # the iterative clicks' RNG (saved for resume); batches have their own per step (StepBatches)
        self.rng = np.random.default_rng([cfg.seed, self.dist.rank] if self.dist.enabled else cfg.seed)
        self.model = self.make_model()
        self.model.to(self.device).train()
        self.net: torch.nn.Module = self.model
        if self.dist.enabled:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.loss_fn = NormalizedFocalLoss(alpha=0.5, gamma=2.0)
        self.step = 0
        self._batch_iter: Iterator | None = None  # the DataLoader's iterator and the step it is at
        self._batch_step = -1
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        if pool is None:
            pool = ObjectPool(max_side=cfg.max_side, min_area=self.min_object_area)
            for name in cfg.datasets:
                pool.add_dataset(name, cfg.data_root, cfg.limit_per_dataset)
        if not pool.objects:
            raise ValueError("the training pool has no objects")
        self.pool = pool
        self.setup_sampling()
        self.validation = None  # ValidationSet / MoisValidationSet
        val_names = cfg.val_dataset if self.dist.is_main else None  # rank 0 validates
        val_names = [val_names] if isinstance(val_names, (str, os.PathLike)) else list(val_names or [])
        val_names = [str(n) for n in val_names if n is not None]
        if len(val_names) > 1 and any(n.lower() in ("", "auto", "none", "off") for n in val_names):
            raise ValueError(f"val_dataset {val_names}: 'auto' / 'none' stand alone, not in a list of datasets")
        if len(val_names) == 1 and val_names[0].lower() in ("", "none", "off"):
            val_names = []
        if val_names == ["auto"]:
            val_names = ["COCO_Tiny_val"] if cfg.data_root else []
        if val_names and cfg.val_every > 0:
            self.validation = self.make_validation(val_names)
        self.best_key: tuple[float, ...] = (math.inf,)  # the validation set's key of best.pt

    min_object_area = 40  # pooled objects smaller than this (pixels) are not trained on
    view_min_side = 24  # smallest crop around an object (dataset.random_view); adapt.py uses the engine's 200

    @property
    def best_noc(self) -> float:
        """NoC@85 of ``best.pt`` (the first entry of every validation key)."""
        return self.best_key[0]

    def val_share(self, names: list[str]) -> int:
        """Validation objects per dataset: ``val_objects`` shared out (at least one each)."""
        return max(1, math.ceil(self.cfg.val_objects / len(names)))

    def make_validation(self, names: list[str]):
        """The held-out set that picks ``best.pt`` (SOIS protocol here), ``val_objects`` shared
        out among the datasets."""
        cfg, per = self.cfg, self.val_share(names)
        sets = [ValidationSet.from_dataset(n, cfg.data_root, per, cfg.max_side, cfg.val_min_area) for n in names]
        return ValidationSet([o for vs in sets for o in vs.objects])

    def make_model(self) -> torch.nn.Module:
        cfg = self.cfg
        if cfg.init_from:  # an iCMFormer++ file here would fail at the first step, after the data loaded
            return at_input_size(load_model(cfg.init_from, expect_arch="icmformer"), cfg.img_size).train()
        return build_model(get_config(cfg.model, img_size=cfg.img_size, **cfg.model_overrides))

    def setup_sampling(self) -> None:
        self.weights = self.pool.weights()

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    def save(self, path: Path | None = None) -> Path:
        """Model + optimizer + step + RNG state: everything an exact resume needs (rank 0 writes)."""
        path = path or self.last_path
        if not self.dist.is_main:
            return path
        with _no_interrupt():  # a second Ctrl-C must not leave half a pair behind
            # state first, then weights, each tmp-then-rename: the pair is consistent unless the
            # process dies between the two renames, which resume() detects by the step both hold
            state = {"optimizer": self.opt.state_dict(), "step": self.step, "rng": _rng_state(self.rng),
                     "best_key": [float(v) for v in self.best_key]}
            state_path = path.with_suffix(".state")
            tmp = state_path.with_suffix(".state.tmp")
            torch.save(state, tmp)
            tmp.replace(state_path)
            save_checkpoint(path, self.model, extra={
                "step": self.step,
                "train_config": asdict(self.cfg),
                "world_size": self.dist.world_size,
            })
        return path

    def resume(self, path: Path | None = None) -> None:
        """Continue exactly where ``save`` stopped. Both files are read with safe loading (tensors
        and plain Python types only): a crafted state file cannot run code."""
        path = path or self.last_path
        model = load_model(path)
        state_path = path.with_suffix(".state")
        if not state_path.is_file():
            raise CheckpointError(f"{state_path} is missing: cannot resume (the weights alone are "
                                  f"--init-from {path})")
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError for foreign objects, EOF/zip errors for damage
            reason = str(exc).splitlines()[0][:200] if str(exc) else "empty or truncated file"
            raise CheckpointError(f"{state_path} is not a training state this version can read safely "
                                  f"({type(exc).__name__}: {reason})") from exc
        if not isinstance(state, dict) or not {"optimizer", "step", "rng"} <= set(state):
            raise CheckpointError(f"{state_path} is not a training state (missing optimizer/step/rng)")
        weights_step = getattr(model, "checkpoint_extra", {}).get("step")
        if weights_step is not None and int(weights_step) != int(state["step"]):
            raise CheckpointError(f"{path} (step {weights_step}) and {state_path} (step {state['step']}) "
                                  "do not belong together: the last save was interrupted")
        self.model.load_state_dict(model.state_dict())
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.best_key = tuple(state.get("best_key", (float(state.get("best_noc", math.inf)),)))
        if self.dist.rank > 0:  # the saved RNG stream is rank 0's: give this rank its own
            self.rng = np.random.default_rng([self.cfg.seed, self.dist.rank, self.step])
        self.rng.bit_generator.state = state["rng"]["numpy"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])

    # -- one step ---------------------------------------------------------------------------
    def draw_batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """One batch on the CPU (images, masks, padded points), drawn with ``rng``."""
        images, masks, points = [], [], []
        while len(images) < self.cfg.batch_size:
            idx = int(rng.choice(len(self.pool.objects), p=self.weights))
            sample = make_training_sample(self.pool, idx, self.cfg.img_size, rng, self.cfg.copy_paste,
                                          self.view_min_side)
            if sample is None:
                continue
            images.append(sample[0])
            masks.append(sample[1])
            points.append(sample[2])
        return torch.stack(images), torch.stack(masks), collate_points(points, extra=self.cfg.max_iter_clicks)

    def batches(self, start: int) -> torch.utils.data.DataLoader:
        """The batches of steps ``start``, ``start + 1``, ... prepared by ``cfg.workers`` processes
        (0 = in this one) while the model trains. Its own generator: making a loader leaves the
        global torch RNG (saved for an exact resume) untouched."""
        workers = self.cfg.workers
        return torch.utils.data.DataLoader(
            StepBatches(self.draw_batch, self.cfg.seed, self.dist.rank), batch_size=None,
            sampler=itertools.count(start), num_workers=workers, generator=torch.Generator(),
            worker_init_fn=_one_thread if workers else None, prefetch_factor=2 if workers else None,
            pin_memory=self.device.type == "cuda")

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        """The batch of the current step on the training device."""
        if self._batch_iter is None or self._batch_step != self.step:
            self._batch_iter = iter(self.batches(self.step))
        batch = next(self._batch_iter)
        self._batch_step = self.step + 1
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def iterative_clicks(self, predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                         targets: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """0–N clicks from the model's own errors on ``targets``, each fed back with the previous
        mask, so the model learns to use corrections (RITM). ``predict(points, prev)`` gives the
        logits; returns the points with the new clicks and the last previous mask."""
        prev = torch.zeros_like(targets)
        n_iter = int(self.rng.integers(0, self.cfg.max_iter_clicks + 1))
        if n_iter == 0:
            return points, prev
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for _ in range(n_iter):
                prev = torch.sigmoid(predict(points, prev))
                pred = (prev > DEFAULT_THRESHOLD).cpu().numpy()[:, 0]
                gt = (targets > 0.5).cpu().numpy()[:, 0]
                for b in range(len(pred)):
                    click = sample_error_click(pred[b], gt[b], self.rng)
                    free = (points[b, :, 2] == -1).nonzero()
                    if click is not None and len(free):
                        points[b, int(free[0])] = torch.tensor(click)
        self.model.train(was_training)
        return points, prev

    def forward_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets of one batch (clicks simulated, previous mask fed back)."""
        images, masks, points = self.next_batch()
        size = (images.shape[2], images.shape[3])
        radius = self.model.cfg.click_radius
        points, prev = self.iterative_clicks(lambda pts, pm: self.model(images, coord_maps(pts, pm, size, radius)),
                                             masks, points)
        maps = coord_maps(points, prev, size, radius)
        with self.autocast():
            logits = self.net(images, maps)  # DDP wrapper when distributed: gradients averaged
        return logits, masks

    def autocast(self):
        use_amp = self.cfg.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp)

    def train_step(self) -> float:
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, self.cfg)
        logits, masks = self.forward_batch()
        loss = self.loss_fn(logits.float(), masks)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        return float(loss.detach())

    def validate(self) -> dict[str, float] | None:
        """Scores the held-out set; saves ``best.pt`` when its key improves. Appends val.csv."""
        if self.validation is None:
            return None
        metrics = self.validation.evaluate(self.model, self.cfg.val_max_clicks)
        self.model.train()
        path = self.out / "val.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["step", *metrics])
            writer.writerow([self.step, *(f"{v:.4f}" for v in metrics.values())])
        key = self.validation.key(metrics)
        if key < self.best_key:
            self.best_key = key
            save_checkpoint(self.out / "best.pt", self.model,
                            extra={"step": self.step, "validation": metrics, "train_config": asdict(self.cfg)})
        return metrics

    def fit(self) -> Path:
        main = self.dist.is_main
        log_path = self.out / "log.csv" if main else Path(os.devnull)
        new_log = main and not log_path.exists()
        with open(log_path, "a", newline="") as fh:
            writer = csv.writer(fh)
            if new_log:
                writer.writerow(["step", "loss", "lr", "seconds"])
            bar = tqdm(total=self.cfg.iterations, initial=self.step, desc="train", dynamic_ncols=True,
                       disable=not main)
            t0 = time.time()
            if self.validation is not None and self.step == 0 and self.cfg.init_from:
                m = self.validate()  # the starting checkpoint's score: best.pt must beat it
                bar.write("step 0: validation " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
            try:
                while self.step < self.cfg.iterations:
                    loss = self.train_step()
                    writer.writerow([self.step, f"{loss:.5f}", f"{lr_at(self.step - 1, self.cfg):.3g}",
                                     f"{time.time() - t0:.1f}"])
                    fh.flush()  # a live log: plots and watchers see every step
                    bar.set_postfix(loss=f"{loss:.4f}")
                    bar.update(1)
                    if self.step % self.cfg.save_every == 0:
                        self.save()
                    if self.validation is not None and (
                            self.step % self.cfg.val_every == 0 or self.step == self.cfg.iterations):
                        m = self.validate()
                        bar.write(f"step {self.step}: validation " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
            except KeyboardInterrupt:
                bar.write(f"interrupted at step {self.step}: saving {self.last_path}")
                self.save()
                raise
            finally:
                bar.close()
        return self.save()
