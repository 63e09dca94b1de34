"""Annotation state apart from widgets: clicks, live mask, committed objects, undo.

Widgets only translate events into calls on an :class:`Annotator`; tests drive it without Qt.
Prediction is split into ``request`` (a pure job the widget runs on a worker thread) and
``apply`` (main thread), so a stale result — one whose clicks are no longer the current
clicks — is recognised and dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from src_models import Clicks


@dataclass(frozen=True)
class PredictionJob:
    generation: int
    clicks: Clicks
    prev_prob: np.ndarray | None


@dataclass
class _Snapshot:
    kind: str  # "click", "clear", "commit" or "accept" (several proposals committed at once)
    clicks: Clicks
    prob: np.ndarray | None
    objects: np.ndarray | None = None  # full copy of the labels before a commit


class Annotator:
    """One 2-D image: the object being clicked and the committed instance labels."""

    def __init__(self, shape: tuple[int, int], threshold: float = 0.49, objects: np.ndarray | None = None) -> None:
        self.shape = tuple(shape)
        self.threshold = threshold
        self.clicks = Clicks()
        self.prob: np.ndarray | None = None
        if objects is not None and objects.shape != self.shape:
            raise ValueError(f"objects layer shape {objects.shape} does not match the image {self.shape}")
        self.objects = np.zeros(self.shape, np.int32) if objects is None else objects
        self.generation = 0
        self._undo: list[_Snapshot] = []
        self.object_clicks: dict[int, Clicks] = {}  # the clicks that made each committed object
        self.last_committed = 0

    # -- clicks ------------------------------------------------------------------------------
    @property
    def current_mask(self) -> np.ndarray:
        if self.prob is None:
            return np.zeros(self.shape, bool)
        return self.prob > self.threshold

    def add_click(self, y: float, x: float, positive: bool = True) -> PredictionJob:
        """Record a click (undoable) and return the prediction job for it."""
        h, w = self.shape
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"click at (y={y:.0f}, x={x:.0f}) is outside the image ({h} x {w})")
        self._undo.append(_Snapshot("click", self.clicks, self.prob))
        self.clicks = self.clicks.add(y, x, positive)
        self.generation += 1
        return PredictionJob(self.generation, self.clicks, self.prob)

    def apply(self, job: PredictionJob, prob: np.ndarray) -> bool:
        """Take a finished prediction; False (and nothing changes) if it is stale."""
        if job.generation != self.generation:
            return False
        self.prob = prob
        return True

    @staticmethod
    def run(job: PredictionJob, predict: Callable[[Clicks, np.ndarray | None], np.ndarray]) -> np.ndarray:
        """The worker-thread part: no state is touched here."""
        return predict(job.clicks, job.prev_prob)

    def clear(self) -> None:
        """Drop the current clicks and mask (undoable)."""
        if len(self.clicks) == 0 and self.prob is None:
            return
        self._undo.append(_Snapshot("clear", self.clicks, self.prob))
        self.clicks, self.prob = Clicks(), None
        self.generation += 1

    # -- objects -----------------------------------------------------------------------------
    def next_id(self) -> int:
        return int(self.objects.max()) + 1

    def commit(self, overwrite: bool = False) -> int:
        """Write the current mask into ``objects`` with a new id; existing objects are kept
        unless ``overwrite``. Returns the new id, 0 if there was nothing to commit."""
        mask = self.current_mask
        if not overwrite:
            mask = mask & (self.objects == 0)
        if not mask.any():
            return 0
        self._undo.append(_Snapshot("commit", self.clicks, self.prob, self.objects.copy()))
        new_id = self.next_id()
        self.objects[mask] = new_id
        self.object_clicks[new_id] = self.clicks
        self.last_committed = new_id
        self.clicks, self.prob = Clicks(), None
        self.generation += 1
        return new_id

    def commit_labels(self, instances: np.ndarray, overwrite: bool = False) -> list[int]:
        """Commit several objects at once (accepted proposals) as one undo step; each instance
        gets a new id, existing objects are kept unless ``overwrite``. Returns the new ids."""
        instances = np.asarray(instances)
        if instances.shape != self.shape:
            raise ValueError(f"instances shape {instances.shape} does not match the image {self.shape}")
        before = self.objects.copy()
        next_id, ids = self.next_id(), []
        for lab in np.unique(instances):
            if lab == 0:
                continue
            m = instances == lab
            if not overwrite:
                m &= before == 0
            if m.any():
                self.objects[m] = next_id
                ids.append(next_id)
                next_id += 1
        if ids:
            self._undo.append(_Snapshot("accept", self.clicks, self.prob, before))
            self.generation += 1
        return ids

    def undo(self) -> str | None:
        """Undo the last click, clear or commit, restoring the exact previous arrays."""
        if not self._undo:
            return None
        snap = self._undo.pop()
        self.clicks, self.prob = snap.clicks, snap.prob
        if snap.objects is not None:
            self.objects[...] = snap.objects  # in place: the napari layer keeps its array
        self.generation += 1
        return snap.kind

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)
