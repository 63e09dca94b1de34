"""Fix clicks on Find-similar proposals do what the user means (engine + RecallAnnotator, no Qt).

The network is a hand-set stand-in for iCMFormer++ (``ColourPP``): it proposes every pixel whose
colour is close to the exemplar's mean colour and, like a network that listens to clicks only
locally, drops just a small disk under a negative click. So the rules under test (split, whole
proposal removed, size rule) are the engine's, and the proposals depend on the exemplar.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from skimage.draw import disk

from napari_icmformer.annotator import Annotator, RecallAnnotator
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.metrics import iou
from src_models import Clicks
from src_models.icmformer_pp import ExemplarFeatures

SIZE = 96
RED, BLUE = (220, 40, 40), (40, 40, 220)


class ColourPP(torch.nn.Module):
    """Proposes the pixels within ``tol`` of the exemplar's mean colour; a negative click
    removes only the pixels of its disk (channel 2 of the recall maps)."""

    def __init__(self, tol: float = 0.2) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(img_size=SIZE, patch_size=16, click_radius=3)
        self.tol = tol

    def encode_exemplar(self, image: torch.Tensor, maps: torch.Tensor) -> ExemplarFeatures:
        m = maps[:, :1]
        colour = (image * m).sum((2, 3), keepdim=True) / m.sum((2, 3), keepdim=True)
        return ExemplarFeatures(colour, None)

    def encode_recall_image(self, image: torch.Tensor):
        return image, []

    def decode(self, ex: ExemplarFeatures, recall_image, maps: torch.Tensor, size) -> torch.Tensor:
        d = (recall_image[0] - ex.exemplar).norm(dim=1, keepdim=True)
        logits = 40.0 * (self.tol - d)
        return logits - 80.0 * (maps[:, 2:3] > 0.5)

    def forward(self, image, exemplar_maps, recall_maps):
        return self.decode(self.encode_exemplar(image, exemplar_maps), self.encode_recall_image(image),
                           recall_maps, image.shape[2:])


def _disk(c, r):
    m = np.zeros((SIZE, SIZE), bool)
    m[disk(c, r, shape=m.shape)] = True
    return m


def _scene():
    """Red nuclei: the exemplar, a merged pair (one proposal for two objects), a lone one, a
    speck; blue squares of another kind."""
    objs = {"exemplar": _disk((20, 20), 10), "pair_a": _disk((60, 25), 10), "pair_b": _disk((60, 38), 9),
            "lone": _disk((20, 70), 9), "speck": np.zeros((SIZE, SIZE), bool), "speck2": np.zeros((SIZE, SIZE), bool)}
    objs["speck"][88:93, 88:93] = True  # 25 px: above the 16 px floor, under 0.2 x the exemplar's 316
    objs["speck2"][2:7, 45:50] = True
    img = np.full((SIZE, SIZE, 3), 30, np.uint8)
    for m in objs.values():
        img[m] = RED
    blue = [np.zeros((SIZE, SIZE), bool) for _ in range(2)]
    blue[0][40:52, 70:82] = True
    blue[1][75:87, 55:67] = True
    for m in blue:
        img[m] = BLUE
    return img, objs, blue


def _session(img, exemplar, config=None):
    ann = Annotator((SIZE, SIZE))
    ann.objects[exemplar] = 1
    ann.object_clicks[1] = Clicks().add(*np.argwhere(exemplar).mean(0))
    ann.last_committed = 1
    recaller = ExemplarPredictor(ColourPP(), config or RecallConfig(device="cpu", view=None))
    return RecallAnnotator(ann), recaller


def _run(rec, recaller, img, job):
    """What the widget's worker does with a job, then the main-thread part."""
    recaller.set_image(img, key="img")
    recaller.set_exemplar(job.exemplar, job.exemplar_clicks, key=job.exemplar_id)
    result = recaller.recall(job.clicks, job.prev_prob)
    assert rec.apply(job, result)
    return rec.proposals()


def _objects_on(labels, mask):
    ids = np.unique(labels[mask])
    return [int(i) for i in ids if i]


def test_positive_click_inside_a_merged_proposal_splits_it():
    img, objs, _ = _scene()
    rec, recaller = _session(img, objs["exemplar"])
    first = _run(rec, recaller, img, rec.start())
    pair = objs["pair_a"] | objs["pair_b"]
    assert len(_objects_on(first, pair)) == 1  # the automatic split merged the two nuclei
    lone_before = first == first[20, 70]
    props = _run(rec, recaller, img, rec.add_click(60, 38))  # on nucleus b
    assert rec.result.action == "split"
    a, b = props[60, 25], props[60, 38]
    assert a and b and a != b
    assert iou(props == a, objs["pair_a"]) > 0.7 and iou(props == b, objs["pair_b"]) > 0.7
    np.testing.assert_array_equal(props == props[20, 70], lone_before)  # the other objects are kept
    # the cut lasts: a click elsewhere (a negative one on a blue-free background pixel) keeps both
    props = _run(rec, recaller, img, rec.add_click(5, 90, positive=False))
    assert props[60, 25] and props[60, 38] and props[60, 25] != props[60, 38]
    # a positive click on a proposal that is one object does not cut it
    props = _run(rec, recaller, img, rec.add_click(20, 70))
    assert rec.result.action == "" and iou(props == props[20, 70], objs["lone"]) > 0.9
    ids = rec.accept()
    assert len(ids) == 3 and len(_objects_on(rec.annotator.objects, pair)) == 2


def test_negative_click_removes_the_whole_proposal_and_it_stays_removed():
    img, objs, _ = _scene()
    rec, recaller = _session(img, objs["exemplar"])
    first = _run(rec, recaller, img, rec.start())
    assert first[20, 70]
    props = _run(rec, recaller, img, rec.add_click(20, 63, positive=False))  # near the lone one's edge
    assert rec.result.action == "removed"
    # the stand-in network dropped only a disk of radius 3 (its last output is cached per tile);
    # the rule removed the whole proposal
    network = recaller._tile_probs[0][1]
    assert network[20, 75] > 0.5 and network[20, 63] < 0.5
    assert not props[objs["lone"]].any()
    assert not rec.result.mask[objs["lone"]].any()
    kept = first.copy()
    kept[objs["lone"]] = 0
    np.testing.assert_array_equal(props > 0, kept > 0)  # only the proposal under the click changed
    props = _run(rec, recaller, img, rec.add_click(60, 38))  # a later click elsewhere
    assert not props[objs["lone"]].any()
    # undo brings it back (the annotator steps back to the result before the clicks)
    rec.undo()
    rec.undo()
    assert rec.proposals()[20, 70]


def test_size_rule_drops_specks_relative_to_the_exemplar():
    img, objs, _ = _scene()
    rec, recaller = _session(img, objs["exemplar"])
    props = _run(rec, recaller, img, rec.start())
    assert not props[objs["speck"] | objs["speck2"]].any() and props[20, 70]
    off, recaller_off = _session(img, objs["exemplar"], RecallConfig(device="cpu", view=None, min_area=0.0))
    assert _run(off, recaller_off, img, off.start())[objs["speck"]].all()  # proposed without the rule
    # relative to the exemplar: with the speck as the exemplar, the other speck is an object like it
    small, recaller_small = _session(img, objs["speck"])
    assert _run(small, recaller_small, img, small.start())[objs["speck2"]].all()
    # a positive click on a speck keeps it
    props = _run(rec, recaller, img, rec.add_click(90, 90))
    assert props[objs["speck"]].all()


def test_swapping_the_exemplar_changes_the_proposals():
    img, objs, blue = _scene()
    red_rec, red = _session(img, objs["exemplar"])
    red_props = _run(red_rec, red, img, red_rec.start())
    blue_rec, blu = _session(img, blue[0])
    blue_props = _run(blue_rec, blu, img, blue_rec.start())
    assert red_props[20, 70] and not red_props[blue[1]].any()
    assert blue_props[blue[1]].all() and not blue_props[objs["lone"]].any()
    assert not np.array_equal(red_props > 0, blue_props > 0)
    # the same image and clicks, only the exemplar differs: an engine that ignored it (fed no
    # exemplar mask) would give NaN colours and propose nothing
    red.set_exemplar(blue[0], Clicks().add(46, 76), key="swap")
    assert red.recall().mask[blue[1]].all()


def test_removed_object_stays_removed_with_global_updates():
    # "global": every recall takes the network's whole new mask, which proposes the object again
    # (the stand-in drops only the disk under the negative click); the object's last click is
    # negative, so it is not proposed
    img, objs, _ = _scene()
    rec, recaller = _session(img, objs["exemplar"], RecallConfig(device="cpu", view=None, update="global"))
    _run(rec, recaller, img, rec.start())
    _run(rec, recaller, img, rec.add_click(20, 63, positive=False))
    props = _run(rec, recaller, img, rec.add_click(60, 38))
    assert recaller._tile_probs[0][1][20, 75] > 0.5  # the network proposed it again
    assert not props[objs["lone"]].any() and not rec.result.mask[objs["lone"]].any()
    # a later positive click on it brings it back (the last click decides)
    props = _run(rec, recaller, img, rec.add_click(20, 75))
    assert iou(props == props[20, 75], objs["lone"] & ~_disk((20, 63), 3)) > 0.8


def test_local_update_keeps_a_split_cut():
    from napari_icmformer.postprocess import local_update  # noqa: PLC0415

    pair = _disk((60, 25), 10) | _disk((60, 38), 9)
    prev = pair.astype(np.float32)
    prev[:, 33] = 0  # a split's cut: two objects
    new = pair.astype(np.float32) * 0.9  # the network knows no cut: one blob again
    out = local_update(prev, new, 60, 25)  # a click on the left object
    assert (out[:, 33] == 0).all()  # the cut is kept
    assert (out[pair & (np.arange(SIZE) != 33)[None]] > 0.5).all()


def test_a_negative_click_beside_an_object_does_not_remove_it():
    from napari_icmformer.postprocess import click_instances  # noqa: PLC0415

    bitten = _disk((30, 30), 10) & ~_disk((30, 37), 3)  # the network dropped the disk under the click
    neighbour = _disk((30, 70), 10)  # a right object 4 px beside a removed speck's click
    labels, removed = click_instances(bitten | neighbour, Clicks().add(30, 37, False).add(30, 56, False), 1.0,
                                      16, reach=5)
    assert removed[30, 30] and not removed[30, 70] and labels[30, 70] and not labels[30, 30]
