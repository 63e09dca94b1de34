"""The "annotate all" protocol: the clicks a scientist counts to get every object of a category
right in one image (``icmformer-eval --task mois --annotate-all``).

Goal: object F1 ≥ 0.9 (IoU > 0.5) and mean matched IoU ≥ 0.8 over the category's objects, within
a budget of 2 clicks per object; the simulated user stops as soon as the goal is met.

* (a) one by one: iCMFormer clicks each object (the benchmark clicker on that object's error)
  until IoU ≥ 0.85 or 5 clicks, then commits it (into free pixels, as the plugin's Commit does).
* (b) find similar: the first object is made as in (a) and is the exemplar (its clicks count);
  Find similar proposes the others. When fewer than a third of the proposals are right (each
  false one costs a click to remove, each right one saves the object's two clicks) the user
  clears them and goes on one by one. Otherwise fix clicks go on the worst error, the
  largest of: a proposal that merges objects (a positive click on the largest of them), a false
  proposal (a negative click), a missed object (a positive click). Each error is clicked once; a
  merge that its split click did not fix is then removed (a negative click), its objects left to
  iCMFormer. Missed objects get recall clicks only while they pay: not when Find similar found
  no right object at all, and not after two recall clicks in a row failed to add theirs. Then
  the proposals are accepted and iCMFormer clicks what is still missing, as in (a).
* Both, last: while the objects are all there (F1 ≥ 0.9) but the mean IoU falls short, the
  poorest object not made by iCMFormer is removed (one click: a negative click on it before
  accepting) and made with iCMFormer as in (a).

Objects are taken in one order in both: the MOIS target's exemplar first, then by size. Both run
through the plugin's state machines (``Annotator``, ``RecallAnnotator``), so a click counted
here is a click there.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from src_models import Clicks

from .annotator import Annotator, RecallAnnotator, RecallJob
from .clicking import first_eval_click
from .evaluation import click_session
from .metrics import InstanceMatch, match_instances
from .mois import MoisTarget

GOAL_F1, GOAL_IOU = 0.9, 0.8  # "every object right"
CLICKS_PER_OBJECT = 2  # the budget
OBJECT_IOU, OBJECT_CLICKS = 0.85, 5  # one object with iCMFormer
FAILED_ADDS = 2  # recall clicks in a row that added nothing before the user stops adding that way
# below this share of right proposals the user clears them: a right proposal saves an object's
# clicks (CLICKS_PER_OBJECT), a false one costs one click to remove, so fixing breaks even at 1/3
KEEP_PROPOSALS = 1 / (1 + CLICKS_PER_OBJECT)


@dataclass
class AnnotateAllResult:
    method: str  # "one-by-one" or "find-similar"
    sample: str
    category: int
    objects: int  # ground-truth objects of the category
    clicks: int = 0  # counted clicks, all kinds (at most CLICKS_PER_OBJECT x objects)
    done: bool = False  # the goal was met within the budget
    objects_right: int = 0  # GT objects matched (IoU > 0.5) at the end
    f1: float = 0.0
    mean_iou: float = 0.0
    seconds: float = 0.0
    exemplar_clicks: int = 0  # (b): the iCMFormer clicks that made the exemplar
    recall_clicks: int = 0  # (b): fix clicks on the proposals
    f1_find_similar: float | None = None  # (b): object F1 of exemplar + first proposals, no fix click
    actions: dict[str, int] = field(default_factory=dict)  # (b): what the fix clicks did


class SimulatedUser:
    """The user's goal, budget and order of the objects, and the count of clicks."""

    def __init__(self, target: MoisTarget) -> None:
        self.instances = [np.asarray(m, bool) for m in target.instances]
        self.ignore = target.ignore
        self.budget = CLICKS_PER_OBJECT * len(self.instances)
        self.clicks = 0
        areas = [int(m.sum()) for m in self.instances]
        rest = sorted((i for i in range(len(areas)) if i != target.exemplar_index), key=lambda i: -areas[i])
        self.order = [target.exemplar_index, *rest]
        self.made: set[int] = set()  # GT objects the user clicked with iCMFormer

    @property
    def spent(self) -> bool:
        return self.clicks >= self.budget

    def score(self, labels: np.ndarray):
        return match_instances(labels, self.instances, ignore=self.ignore)

    def satisfied(self, labels: np.ndarray) -> bool:
        m = self.score(labels)
        return m.f1 >= GOAL_F1 and m.mean_iou >= GOAL_IOU


def with_mask(objects: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``objects`` with ``mask`` committed as one more object into its free pixels."""
    out = objects.copy()
    out[mask & (objects == 0)] = int(objects.max()) + 1
    return out


def with_proposals(objects: np.ndarray, proposals: np.ndarray | None) -> np.ndarray:
    """``objects`` plus the proposals (already free of committed pixels) as further ids."""
    if proposals is None or not proposals.any():
        return objects
    out = objects.copy()
    out[proposals > 0] = proposals[proposals > 0] + int(objects.max())
    return out


def click_object(ann: Annotator, predictor, gt: np.ndarray, user: SimulatedUser) -> bool:
    """iCMFormer on one object until IoU ≥ OBJECT_IOU, OBJECT_CLICKS clicks or the goal; then
    commit. True when the goal is met."""
    free = ann.objects == 0
    if not (gt & free & (True if user.ignore is None else ~user.ignore)).any():
        return False
    predictor.reset_object()

    def respond(clicks: Clicks) -> np.ndarray:
        click = clicks[-1]
        job = ann.add_click(click.y, click.x, click.positive)
        ann.apply(job, predictor.predict(job.clicks, job.prev_prob))
        user.clicks += 1
        return ann.current_mask & free

    if not user.spent:
        for step in click_session(respond, gt, user.ignore, OBJECT_CLICKS, first_on=gt & free):
            if not step.placed:
                break
            if user.satisfied(with_mask(ann.objects, step.mask)):
                ann.commit()
                return True
            if step.iou >= OBJECT_IOU or user.spent:
                break
    if not ann.commit():  # nothing to commit: drop the clicks, the next object starts afresh
        ann.clear()
    return False


def one_by_one(ann: Annotator, predictor, user: SimulatedUser) -> bool:
    """iCMFormer on every object not yet matched, in the user's order. True at the goal."""
    for g in user.order:
        if user.spent:
            break
        matched = {p[0] for p in user.score(ann.objects).pairs}
        if g in matched:
            continue
        user.made.add(g)
        if click_object(ann, predictor, user.instances[g], user):
            return True
    return user.satisfied(ann.objects)


def redo_poor(ann: Annotator, predictor, user: SimulatedUser) -> bool:
    """While every object is there (F1 ≥ GOAL_F1) but the mean IoU falls short: remove the
    poorest object not made by iCMFormer (one click) and make it with iCMFormer. True at the goal."""
    while not user.spent:
        m = user.score(ann.objects)
        if m.f1 < GOAL_F1 or m.mean_iou >= GOAL_IOU:
            break
        poor = [(v, g, lab) for g, lab, v in m.pairs if v < OBJECT_IOU and g not in user.made]
        if not poor:
            break
        _, g, lab = min(poor)
        ann.objects[ann.objects == lab] = 0  # in the plugin: a negative click on it before Accept
        user.clicks += 1
        user.made.add(g)
        if click_object(ann, predictor, user.instances[g], user):
            return True
    return user.satisfied(ann.objects)


def annotate_one_by_one(predictor, image: np.ndarray, target: MoisTarget) -> AnnotateAllResult:
    """(a): the classical way, one object after another."""
    t0 = time.perf_counter()
    user = SimulatedUser(target)
    predictor.set_image(image)
    ann = Annotator(target.target.shape)
    done = one_by_one(ann, predictor, user) or redo_poor(ann, predictor, user)
    return _finish(AnnotateAllResult("one-by-one", target.sample, target.category, len(user.instances)),
                   user, ann.objects, done, t0)


def annotate_find_similar(predictor, recaller, image: np.ndarray, target: MoisTarget) -> AnnotateAllResult:
    """(b): exemplar by iCMFormer, Find similar, fix clicks on the worst error, iCMFormer on the rest."""
    t0 = time.perf_counter()
    user = SimulatedUser(target)
    res = AnnotateAllResult("find-similar", target.sample, target.category, len(user.instances))
    predictor.set_image(image)
    ann = Annotator(target.target.shape)
    first = user.order[0]
    user.made.add(first)
    done = click_object(ann, predictor, user.instances[first], user)
    res.exemplar_clicks = user.clicks
    if not done and ann.last_committed and not user.spent:
        done = _recall_phase(ann, recaller, image, user, res)
    done = done or one_by_one(ann, predictor, user) or redo_poor(ann, predictor, user)
    return _finish(res, user, ann.objects, done, t0)


def _recall_phase(ann: Annotator, recaller, image: np.ndarray, user: SimulatedUser,
                  res: AnnotateAllResult) -> bool:
    """Find similar, fix clicks, accept. True when the goal is met."""
    rec = RecallAnnotator(ann)
    key = object()  # this image, this session: the recaller keeps its features between clicks
    _run(rec, recaller, image, rec.start(ann.last_committed), key)
    state = with_proposals(ann.objects, rec.proposals())
    first = user.score(state)
    res.f1_find_similar = first.f1
    if proposal_precision(first, user.score(ann.objects), int(ann.objects.max())) < KEEP_PROPOSALS:
        rec.stop()  # mostly wrong: Clear, and on one by one
        return False
    exemplar = user.order[0]
    adds_allowed = any(g != exemplar for g, _, _ in first.pairs)
    tried: set[tuple] = set()
    failed_adds, actions = 0, Counter()
    while not user.spent and not user.satisfied(state):
        error = worst_error(state, int(ann.objects.max()), user, tried, adds_allowed)
        if error is None:
            break
        kind, key_, (y, x, positive), for_icmformer = error
        tried.add(key_)
        tried.update(("missed", g) for g in for_icmformer)  # removed for iCMFormer, not re-added by recall
        result = _run(rec, recaller, image, rec.add_click(y, x, positive), key)
        user.clicks += 1
        res.recall_clicks += 1
        actions[getattr(result, "action", "") or "none"] += 1
        state = with_proposals(ann.objects, rec.proposals())
        if kind == "missed":
            added = key_[1] in {g for g, _, _ in user.score(state).pairs}
            failed_adds = 0 if added else failed_adds + 1
            adds_allowed = failed_adds < FAILED_ADDS
    res.actions = dict(actions)
    if rec.proposals() is not None:
        rec.accept()
    return user.satisfied(ann.objects)


def proposal_precision(state: InstanceMatch, committed: InstanceMatch, first_proposal: int) -> float:
    """The share of the shown proposals (labels above ``first_proposal``) that match an object;
    0 when nothing is proposed. ``state`` scores committed objects plus proposals, ``committed``
    the committed objects alone (proposals never cover committed pixels)."""
    shown = state.n_pred - committed.n_pred
    right = sum(1 for _, lab, _ in state.pairs if lab > first_proposal)
    return right / shown if shown > 0 else 0.0


def _run(rec: RecallAnnotator, recaller, image: np.ndarray, job: RecallJob, key: object):
    """What the widget's worker does with a recall job, then the main-thread part."""
    recaller.set_image(image, key=key)
    recaller.set_exemplar(job.exemplar, job.exemplar_clicks, key=(key, job.exemplar_id))
    result = recaller.recall(job.clicks, job.prev_prob)
    rec.apply(job, result)
    return result


def worst_error(state: np.ndarray, first_proposal: int, user: SimulatedUser, tried: set[tuple],
                adds_allowed: bool) -> tuple[str, tuple, tuple[float, float, bool], tuple[int, ...]] | None:
    """The largest error a recall click can fix: (kind, key, (y, x, positive), the GT objects
    the click leaves to iCMFormer), or None. ``state`` holds the committed objects (ids ≤
    ``first_proposal``) and the proposals above; ``key`` names the error across clicks (each is
    clicked once). A merge that one split click did not fix is removed (a negative click) so
    iCMFormer can make its objects."""
    gts = user.instances
    areas = [int(g.sum()) for g in gts]
    overlaps = [np.unique(state[g], return_counts=True) for g in gts]
    area_l = np.bincount(state.ravel(), minlength=int(state.max()) + 1)
    match = {g: (p, v) for g, p, v in user.score(state).pairs}
    matched_labels = {p for p, _ in match.values()}
    inside: dict[int, list[int]] = {}
    for g, (ids, counts) in enumerate(overlaps):
        for lab, c in zip(ids, counts, strict=True):
            if lab > first_proposal and c >= 0.5 * areas[g]:
                inside.setdefault(int(lab), []).append(g)
    proposals = [lab for lab in range(first_proposal + 1, len(area_l)) if area_l[lab]]
    centres = ndimage.center_of_mass(np.ones(state.shape), state, proposals) if proposals else []
    errors: list[tuple] = []  # size, kind, key, (region spec, positive), GT objects left to iCMFormer
    for lab, centre in zip(proposals, centres, strict=True):
        objs = inside.get(lab, [])
        if len(objs) >= 2:
            big = max(objs, key=lambda g: areas[g])
            if ("merge", big) not in tried:
                errors.append((area_l[lab], "merge", ("merge", big), (("gt-in", big, lab), True), ()))
            else:
                errors.append((area_l[lab], "unmerge", ("unmerge", big), (("label", lab), False), tuple(objs)))
        elif lab not in matched_labels:
            where = (int(centre[0]) // 4, int(centre[1]) // 4)
            errors.append((area_l[lab], "false", ("remove", where), (("label", lab), False), ()))
    if adds_allowed:
        for g, (ids, counts) in enumerate(overlaps):
            if g not in match and counts[ids > 0].sum() < 0.5 * areas[g]:
                errors.append((areas[g], "missed", ("missed", g), (("gt-free", g), True), ()))
    errors = [e for e in errors if e[2] not in tried]
    if not errors:
        return None
    _, kind, key, (spec, positive), for_icmformer = max(errors, key=lambda e: e[0])
    if spec[0] == "gt-in":
        region = gts[spec[1]] & (state == spec[2])
    elif spec[0] == "gt-free":
        region = gts[spec[1]] & (state == 0)
    else:
        region = state == spec[1]
    y, x = _centre(region)
    return kind, key, (y, x, positive), for_icmformer


def _centre(region: np.ndarray) -> tuple[float, float]:
    """Where the clicker clicks a region: its most interior point (found on its bounding box)."""
    box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in ndimage.find_objects(region.astype(np.int8))[0])
    click = first_eval_click(region[box])
    return click.y + box[0].start, click.x + box[1].start


def _finish(res: AnnotateAllResult, user: SimulatedUser, labels: np.ndarray, done: bool,
            t0: float) -> AnnotateAllResult:
    m = user.score(labels)
    res.clicks, res.done = user.clicks, bool(done)
    res.objects_right, res.f1, res.mean_iou = len(m.pairs), m.f1, m.mean_iou
    res.seconds = time.perf_counter() - t0
    return res


def summarize_annotate_all(results: list[AnnotateAllResult]) -> dict[str, float]:
    """Clicks per object (all clicks / all objects), the share of targets done, the share of
    objects right, seconds per target and, for (b), the F1 of Find similar before any fix."""
    objects = sum(r.objects for r in results)
    out: dict[str, float] = {"targets": len(results), "objects": objects}
    if not results:
        return out
    out["AA clicks/object"] = sum(r.clicks for r in results) / max(objects, 1)
    out["AA done"] = float(np.mean([r.done for r in results]))
    out["AA objects right"] = sum(r.objects_right for r in results) / max(objects, 1)
    out["AA s/target"] = float(np.mean([r.seconds for r in results]))
    fs = [r.f1_find_similar for r in results if r.f1_find_similar is not None]
    if fs:
        out["AA F1 find similar"] = float(np.mean(fs))
    return out
