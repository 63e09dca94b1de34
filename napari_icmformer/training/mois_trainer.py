"""``icmformer-train --task mois``: iCMFormer++ on Alg. 1 samples from instance-annotated data.

The same loop as the SOIS trainer (checkpoints, exact resume, DDP, Ctrl-C); what changes is the
model (iCMFormer++, both branches initialised from an iCMFormer checkpoint when ``init_from``
is one), the samples (exemplar + category target, see ``mois_dataset``) and the clicks: the
exemplar branch gets the exemplar mask and its DIOS clicks, the recall branch starts from the
exemplar's true negatives and gets 0–N iterative clicks from its own errors.
Held-out validation (``--val-dataset``, COCO_Tiny val by default) runs the MOIS "additional"
protocol on fixed targets and keeps ``best.pt`` by category NoC@85, then mIoU+@5.
"""

from __future__ import annotations

import numpy as np
import torch

from src_models import build_model, coord_maps, get_config
from src_models.icmformer_pp import init_from_icmformer

from ..checkpoints import load_model
from .dataset import ObjectPool, collate_points
from .mois_dataset import group_weights, kind_of, make_mois_sample, mois_groups
from .trainer import MOIS_DATASETS, TrainConfig, Trainer, at_input_size
from .validation import MoisValidationSet

__all__ = ["MOIS_DATASETS", "MoisTrainer", "make_trainer"]


class MoisTrainer(Trainer):
    min_object_area = 4  # small instances still belong to the category target

    def make_validation(self, names: list[str]) -> MoisValidationSet:
        cfg, per = self.cfg, self.val_share(names)
        sets = [MoisValidationSet.from_dataset(n, cfg.data_root, per, cfg.max_side, cfg.seed) for n in names]
        return MoisValidationSet([t for vs in sets for t in vs.targets])

    def make_model(self) -> torch.nn.Module:
        cfg = self.cfg
        name = cfg.model if cfg.model.startswith("icmformer_pp_") else f"icmformer_pp_{cfg.model}"
        if cfg.init_from:
            source = at_input_size(load_model(cfg.init_from), cfg.img_size)
            if source.cfg.arch == "icmformer_pp":
                return source.train()
            # the front end follows the iCMFormer checkpoint; MOIS-only fields follow --model
            own = get_config(name)
            fields = {"eim_out_index": own.eim_out_index, "use_eim": own.use_eim, **cfg.model_overrides}
            model = build_model(source.cfg.replace(arch="icmformer_pp", **fields))
            init_from_icmformer(model, source.state_dict())
            return model.train()
        return build_model(get_config(name, img_size=cfg.img_size, **cfg.model_overrides)).train()

    def setup_sampling(self) -> None:
        self.groups = mois_groups(self.pool)
        if not self.groups:
            raise ValueError("no image has two or more instances of one category: nothing to train MOIS on")
        self.weights = group_weights(self.pool, self.groups)
        # per kind (dataset, category), the draw of a group of another kind for paste_other_kind:
        # the group weights (each dataset alike) with the kind's own groups left out; one array per
        # kind, not per group, so a large pool does not cost groups² of memory
        kinds = [kind_of(self.pool, g) for g in self.groups]
        names = sorted(set(kinds))
        self.kind_of_group = np.array([names.index(q) for q in kinds])
        self.other_kind_p: dict[int, np.ndarray] = {}
        for u in range(len(names)):
            p = np.where(self.kind_of_group != u, self.weights, 0.0)
            if p.sum() > 0:
                self.other_kind_p[u] = p / p.sum()

    def draw_batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """(images, exemplar masks, category targets, exemplar points, recall points) on the CPU."""
        images, exemplars, targets, ex_points, neg_points = [], [], [], [], []
        while len(images) < self.cfg.batch_size:
            k = int(rng.choice(len(self.groups), p=self.weights))
            other, p = None, self.other_kind_p.get(int(self.kind_of_group[k]))
            if self.cfg.other_kinds > 0 and p is not None and rng.random() < self.cfg.other_kinds:
                other = self.groups[int(rng.choice(len(self.groups), p=p))]
            sample = make_mois_sample(self.pool, self.groups[k], self.cfg.img_size, rng, other=other)
            if sample is None:
                continue
            for bucket, item in zip((images, exemplars, targets, ex_points, neg_points), sample, strict=True):
                bucket.append(item)
        # recall points: the exemplar's true negatives + room for the iterative clicks
        recall = collate_points(neg_points, extra=self.cfg.max_iter_clicks)
        return (torch.stack(images), torch.stack(exemplars), torch.stack(targets),
                collate_points(ex_points, extra=0), recall)

    def forward_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, exemplars, targets, ex_points, recall_points = self.next_batch()
        size = (images.shape[2], images.shape[3])
        radius = self.model.cfg.click_radius
        ex_maps = coord_maps(ex_points, exemplars, size, radius)
        # 0–N recall clicks from the model's own errors on the category target
        recall_points, prev = self.iterative_clicks(
            lambda pts, pm: self.model(images, ex_maps, coord_maps(pts, pm, size, radius)), targets, recall_points)
        with self.autocast():
            logits = self.net(images, ex_maps, coord_maps(recall_points, prev, size, radius))
        return logits, targets


def make_trainer(cfg: TrainConfig, pool: ObjectPool | None = None) -> Trainer:
    """The trainer of ``cfg.task``: ``Trainer`` (iCMFormer) or ``MoisTrainer`` (iCMFormer++)."""
    return (MoisTrainer if cfg.task == "mois" else Trainer)(cfg, pool)
