"""The exemplar carried forward: Find similar on another image or slice with an exemplar from a
previous one, by hand (*Find similar here*) or on every slice / image (a worker, or
``icmformer-batch``).

Qt-free. :class:`CarriedRecall` is a :class:`~napari_icmformer.annotator.RecallAnnotator` whose
exemplar is not an object of its own slice: its jobs carry the exemplar's image, and the
worker runs them with ``ExemplarPredictor.set_exemplar_from`` (``set_exemplar`` when the plane
is the exemplar's own). :func:`recall_each` is the one loop over planes that the widget's worker
and the batch command share.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from src_models import Clicks

from .annotator import RecallAnnotator, RecallJob


@dataclass(frozen=True)
class CarriedExemplar:
    """An exemplar object with the image (2-D plane) it is on."""

    image: np.ndarray
    mask: np.ndarray  # bool, the plane's shape
    clicks: Clicks | None
    plane: object  # hashable name of the plane it is on (same plane: plain set_exemplar)
    source: str  # said in the status line, e.g. "img_03.png, object 5"

    def __post_init__(self) -> None:
        if np.asarray(self.mask).shape != np.asarray(self.image).shape[:2]:
            raise ValueError(f"exemplar mask {np.asarray(self.mask).shape} does not match its image "
                             f"{np.asarray(self.image).shape[:2]}")

    @property
    def key(self) -> tuple:
        """Names the exemplar for the predictor's cache (the plane and the mask's pixels)."""
        return ("carried", self.plane, hash(np.packbits(np.asarray(self.mask, bool)).tobytes()))


@dataclass(frozen=True)
class CarriedJob(RecallJob):
    carried: CarriedExemplar | None = None


@dataclass
class CarriedRecall(RecallAnnotator):
    """Find-similar state of a plane whose exemplar comes from another plane (or image)."""

    carried: CarriedExemplar | None = None

    def start_carried(self, exemplar: CarriedExemplar) -> CarriedJob:
        """Begin Find similar here with ``exemplar`` (from a previous image or slice)."""
        self.carried = exemplar
        self.exemplar_id = -1  # active; no object of this plane is the exemplar
        self.clicks, self.result, self.history = Clicks(), None, []
        self.generation += 1
        return self._job()

    def _job(self) -> RecallJob:
        if self.carried is None:
            return super()._job()
        prev = None if self.result is None else self.result.prob  # type: ignore[attr-defined]
        return CarriedJob(self.generation, -1, self.carried.mask, self.carried.clicks, self.clicks, prev,
                          self.carried)

    def show(self, exemplar: CarriedExemplar, result: object) -> None:
        """Proposals computed elsewhere (the all-slices / all-images worker), to review here."""
        self.start_carried(exemplar)
        self.result = result

    def stop(self) -> None:
        super().stop()
        self.carried = None


def set_exemplar_for(recaller, exemplar: CarriedExemplar, plane: object) -> None:
    """Give ``recaller`` (whose image is ``plane``) the exemplar: its own mask on its own plane,
    else carried from its image."""
    if exemplar.plane == plane:
        recaller.set_exemplar(exemplar.mask, exemplar.clicks, key=exemplar.key)
    else:
        recaller.set_exemplar_from(exemplar.image, exemplar.mask, exemplar.clicks, key=exemplar.key)


def recall_each(recaller, planes: Iterable[tuple[object, np.ndarray]],
                exemplar: CarriedExemplar) -> Iterator[tuple[object, object, float]]:
    """Find similar on each ``(plane name, 2-D image)``: yields (name, RecallResult, seconds)
    one plane at a time, so a caller can show progress and stop between planes."""
    for plane, image in planes:
        t = time.perf_counter()
        recaller.set_image(np.asarray(image), key=plane)
        set_exemplar_for(recaller, exemplar, plane)
        yield plane, recaller.recall(), time.perf_counter() - t


def stack_planes(image: np.ndarray, lead: tuple[int, ...], name: object) -> Iterator[tuple[object, np.ndarray]]:
    """Every 2-D plane of an image with leading (non-plane) dims ``lead``: ((name, index), plane)."""
    for idx in np.ndindex(*lead) if lead else [()]:
        yield (name, idx), (image[idx] if idx else image)
