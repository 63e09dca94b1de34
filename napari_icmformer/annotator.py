"""Annotation state apart from widgets: clicks, live mask, committed objects, undo.

Widgets only translate events into calls on an :class:`Annotator` (one object at a time, by
clicks) or a :class:`RecallAnnotator` (Find similar: proposals fixed by clicks, then accepted);
tests drive both without Qt. Prediction is split into ``add_click`` (returns a pure job the
widget runs on a worker thread) and ``apply`` (main thread), so a stale result — one whose
clicks are no longer the current clicks — is recognised and dropped.

Undo is exact but compact: a step keeps the changed bounding box of the labels (not a copy of
the whole label image) and the previous probability as its non-zero box, and the history is
capped in bytes (oldest steps go first), so thousands of commits on a large image stay small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from src_models import Clicks
from src_models.clicks import on_image

from .postprocess import drop_committed
from .recall_views import Box, mask_box
from .runtime import DEFAULT_THRESHOLD

DEFAULT_UNDO_BYTES = 256 * 2**20


@dataclass(frozen=True)
class PredictionJob:
    generation: int
    clicks: Clicks
    prev_prob: np.ndarray | None


@dataclass(frozen=True)
class PackedArray:
    """An array stored as its non-zero bounding box (exact; zeros elsewhere)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    box: Box | None
    crop: np.ndarray | None

    @classmethod
    def pack(cls, array: np.ndarray | None) -> "PackedArray | None":
        if array is None:
            return None
        box = mask_box(array != 0)
        crop = None if box is None else array[box[0]:box[2], box[1]:box[3]].copy()
        return cls(array.shape, array.dtype, box, crop)

    def unpack(self) -> np.ndarray:
        out = np.zeros(self.shape, self.dtype)
        if self.box is not None:
            y0, x0, y1, x1 = self.box
            out[y0:y1, x0:x1] = self.crop
        return out

    @property
    def nbytes(self) -> int:
        return 0 if self.crop is None else int(self.crop.nbytes)


@dataclass
class _Snapshot:
    kind: str  # "click", "clear", "commit" or "accept" (several proposals committed at once)
    clicks: Clicks
    prob: PackedArray | np.ndarray | None  # the live probability before the step
    box: Box | None = None  # where the labels changed
    labels: np.ndarray | None = None  # the labels inside ``box`` before the step
    ids: tuple[int, ...] = ()  # object ids the step created (their clicks are forgotten on undo)

    @property
    def nbytes(self) -> int:
        prob = self.prob.nbytes if isinstance(self.prob, PackedArray) else 0
        return prob + (0 if self.labels is None else int(self.labels.nbytes))


class UndoHistory:
    """A stack of snapshots capped in bytes: the oldest steps are dropped first."""

    def __init__(self, max_bytes: int = DEFAULT_UNDO_BYTES) -> None:
        self.max_bytes = max_bytes
        self._steps: list[_Snapshot] = []
        self.nbytes = 0
        self.dropped = 0  # steps forgotten to stay under the cap

    def push(self, snap: _Snapshot) -> None:
        self._steps.append(snap)
        self.nbytes += snap.nbytes
        while self.nbytes > self.max_bytes and len(self._steps) > 1:
            old = self._steps.pop(0)
            self.nbytes -= old.nbytes
            self.dropped += 1

    def pop(self) -> _Snapshot | None:
        if not self._steps:
            return None
        snap = self._steps.pop()
        self.nbytes -= snap.nbytes
        return snap

    def __len__(self) -> int:
        return len(self._steps)


class Annotator:
    """One 2-D image (or slice): the object being clicked and the committed instance labels.

    ``next_id`` gives the id of the next committed object; by default the plane's maximum + 1.
    A stack passes one shared source, so ids stay unique across slices (3-D tools read the
    same id on two slices as one object).
    """

    def __init__(self, shape: tuple[int, int], threshold: float = DEFAULT_THRESHOLD, objects: np.ndarray | None = None,
                 *, next_id: Callable[[], int] | None = None, max_undo_bytes: int = DEFAULT_UNDO_BYTES) -> None:
        self.shape = tuple(shape)
        if len(self.shape) != 2 or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in self.shape):
            raise ValueError(f"an annotator needs the (height, width) of a 2-D image, got {shape!r}")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be a probability in (0, 1), got {threshold!r}")
        self.threshold = threshold
        self.clicks = Clicks()
        self.prob: np.ndarray | None = None
        if objects is not None and objects.shape != self.shape:
            raise ValueError(f"objects layer shape {objects.shape} does not match the image {self.shape}")
        self.objects = np.zeros(self.shape, np.int32) if objects is None else objects
        self._next_id = next_id
        self.generation = 0
        self._undo = UndoHistory(max_undo_bytes)
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
        if not on_image(y, x, self.shape):
            raise ValueError(f"click at (y={y:.1f}, x={x:.1f}) is outside the image (height {h}, width {w})")
        self._undo.push(_Snapshot("click", self.clicks, PackedArray.pack(self.prob)))
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
        self._undo.push(_Snapshot("clear", self.clicks, PackedArray.pack(self.prob)))
        self.clicks, self.prob = Clicks(), None
        self.generation += 1

    # -- objects -----------------------------------------------------------------------------
    def next_id(self) -> int:
        if self._next_id is not None:
            return int(self._next_id())
        return int(self.objects.max()) + 1 if self.objects.size else 1

    def _check_id_room(self, new_id: int, count: int = 1) -> None:
        info = np.iinfo(self.objects.dtype) if np.issubdtype(self.objects.dtype, np.integer) else None
        if info is not None and new_id + count - 1 > info.max:
            raise ValueError(f"the labels layer holds {self.objects.dtype} values (at most {info.max}): object id "
                             f"{new_id + count - 1} does not fit; convert the layer to int32 first")

    def commit(self, overwrite: bool = False) -> int:
        """Write the current mask into ``objects`` with a new id; existing objects are kept
        unless ``overwrite``. Returns the new id, 0 if there was nothing to commit."""
        mask = self.current_mask
        if not overwrite:
            mask = mask & (self.objects == 0)
        box = mask_box(mask)
        if box is None:
            return 0
        new_id = self.next_id()
        self._check_id_room(new_id)
        y0, x0, y1, x1 = box
        self._undo.push(_Snapshot("commit", self.clicks, PackedArray.pack(self.prob), box,
                                  self.objects[y0:y1, x0:x1].copy(), (new_id,)))
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
        if not np.issubdtype(instances.dtype, np.integer) or (instances.size and instances.min() < 0):
            raise ValueError(f"instances must be non-negative integer ids (0 = none), got {instances.dtype} "
                             f"values from {instances.min()} to {instances.max()}")
        free = instances > 0 if overwrite else (instances > 0) & (self.objects == 0)
        box = mask_box(free)
        if box is None:
            return []
        y0, x0, y1, x1 = box
        inst, keep = instances[y0:y1, x0:x1], free[y0:y1, x0:x1]
        labs = np.unique(inst[keep])
        first = self.next_id()
        self._check_id_room(first, len(labs))
        before = self.objects[y0:y1, x0:x1].copy()
        # one pass: relabel the kept instance pixels to consecutive new ids
        lut = np.zeros(int(labs.max()) + 1, np.int64)
        lut[labs] = np.arange(first, first + len(labs))
        region = self.objects[y0:y1, x0:x1]
        region[keep] = lut[inst[keep]]
        ids = list(range(first, first + len(labs)))
        self._undo.push(_Snapshot("accept", self.clicks, PackedArray.pack(self.prob), box, before, tuple(ids)))
        if ids:
            self.last_committed = ids[-1]
        self.generation += 1
        return ids

    def undo(self) -> str | None:
        """Undo the last click, clear or commit, restoring the exact previous arrays."""
        snap = self._undo.pop()
        if snap is None:
            return None
        self.clicks = snap.clicks
        self.prob = snap.prob.unpack() if isinstance(snap.prob, PackedArray) else snap.prob
        if snap.labels is not None and snap.box is not None:
            y0, x0, y1, x1 = snap.box
            self.objects[y0:y1, x0:x1] = snap.labels  # in place: the napari layer keeps its array
        for i in snap.ids:
            self.object_clicks.pop(i, None)
        if snap.ids and self.last_committed in snap.ids:
            self.last_committed = max(self.object_clicks, default=0)
        self.generation += 1
        return snap.kind

    @property
    def can_undo(self) -> bool:
        return bool(len(self._undo))

    @property
    def undo_bytes(self) -> int:
        return self._undo.nbytes


# -- Find similar ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecallJob:
    generation: int
    exemplar_id: int
    exemplar: np.ndarray  # bool mask of the exemplar object
    exemplar_clicks: Clicks | None  # the clicks that made it (None: painted by hand)
    clicks: Clicks  # recall clicks so far
    prev_prob: np.ndarray | None


@dataclass
class _RecallStep:
    clicks: Clicks
    result: object | None


@dataclass
class RecallAnnotator:
    """Find-similar state of one image (or slice): the exemplar, the recall clicks, the
    proposals and their undo history; ``accept`` commits the proposals through the slice's
    :class:`Annotator` (one undo step there). Same shape as ``Annotator``: ``add_click`` gives a
    job, ``apply`` takes its result unless a newer click or an undo came first."""

    annotator: Annotator
    exemplar_id: int = 0
    clicks: Clicks = field(default_factory=Clicks)
    result: object | None = None  # RecallResult
    generation: int = 0
    history: list[_RecallStep] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.exemplar_id != 0

    def start(self, exemplar_id: int | None = None) -> RecallJob:
        """Begin Find similar with a committed object (default: the last one committed)."""
        eid = int(exemplar_id or self.annotator.last_committed)
        if not eid:
            raise ValueError("Commit an object first: it is the exemplar that Find similar looks for.")
        if not (self.annotator.objects == eid).any():
            raise ValueError(f"no object with id {eid} in this image")
        self.exemplar_id, self.clicks, self.result, self.history = eid, Clicks(), None, []
        self.generation += 1
        return self._job()

    def _job(self) -> RecallJob:
        ann = self.annotator
        prev = None if self.result is None else self.result.prob  # type: ignore[attr-defined]
        return RecallJob(self.generation, self.exemplar_id, ann.objects == self.exemplar_id,
                         ann.object_clicks.get(self.exemplar_id), self.clicks, prev)

    def add_click(self, y: float, x: float, positive: bool = True) -> RecallJob:
        if not self.active:
            raise ValueError("Find similar is not running: press Find similar first")
        h, w = self.annotator.shape
        if not on_image(y, x, self.annotator.shape):
            raise ValueError(f"click at (y={y:.1f}, x={x:.1f}) is outside the image (height {h}, width {w})")
        self.history.append(_RecallStep(self.clicks, self.result))
        self.clicks = self.clicks.add(y, x, positive)
        self.generation += 1
        return self._job()

    def apply(self, job: RecallJob, result: object) -> bool:
        if not self.active or job.generation != self.generation:
            return False
        self.result = result
        return True

    def proposals(self, max_overlap: float = 0.5) -> np.ndarray | None:
        """The proposals (instance labels) minus what is already committed."""
        if not self.active or self.result is None:
            return None
        return drop_committed(self.result.instances, self.annotator.objects, max_overlap)  # type: ignore[attr-defined]

    def undo(self) -> str:
        """Step back one recall click; with none left, leave Find similar."""
        if self.history:
            step = self.history.pop()
            self.clicks, self.result = step.clicks, step.result
            self.generation += 1
            return "recall click"
        self.stop()
        return "find similar"

    def stop(self) -> None:
        self.exemplar_id, self.clicks, self.result, self.history = 0, Clicks(), None, []
        self.generation += 1

    def accept(self) -> list[int]:
        """Commit the proposals as new objects (one undo step in the annotator)."""
        proposals = self.proposals()
        if proposals is None:
            raise ValueError("Nothing to accept: run Find similar first.")
        ids = self.annotator.commit_labels(proposals)
        self.stop()
        return ids
