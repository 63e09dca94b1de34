import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from napari_icmformer.data.readers import CocoInstances
from napari_icmformer.evaluation_mois import (
    evaluate_mois_target,
    evaluate_sois_reference,
    make_exemplar,
    summarize_mois,
)
from napari_icmformer.exemplar import RecallResult
from napari_icmformer.mois import MoisTarget, build_mois_targets, dios_clicks
from tests.test_evaluation import Oracle  # the SOIS oracle: returns its GT mask


def _box(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _rle(m):
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": list(m.shape), "counts": r["counts"].decode()}


def test_alg1_targets_from_a_hand_made_coco_json(tmp_path):
    h, w = 40, 60
    (tmp_path / "imgs").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "imgs" / name)
    cat_a = [_box(h, w, 2, 2, 10, 10), _box(h, w, 20, 5, 30, 15), _box(h, w, 5, 40, 15, 55)]
    lone_b = _box(h, w, 30, 30, 38, 50)
    b_pair = [_box(h, w, 1, 1, 9, 20), _box(h, w, 25, 25, 35, 45)]
    crowd = _box(h, w, 12, 30, 20, 58)
    anns = [(1, 1, m, 0) for m in cat_a] + [(1, 2, lone_b, 0)] + [(2, 2, m, 0) for m in b_pair] + [(2, 2, crowd, 1)]
    data = {"images": [{"id": 1, "file_name": "a.png", "height": h, "width": w},
                       {"id": 2, "file_name": "b.png", "height": h, "width": w}],
            "categories": [{"id": 1, "name": "cell"}, {"id": 2, "name": "car"}],
            "annotations": [{"id": i + 1, "image_id": im, "category_id": c, "segmentation": _rle(m),
                             "iscrowd": crowd_flag, "area": float(m.sum()), "bbox": [0, 0, 1, 1]}
                            for i, (im, c, m, crowd_flag) in enumerate(anns)]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = CocoInstances(tmp_path / "ann.json", tmp_path / "imgs")
    rng = np.random.default_rng(0)
    t1 = build_mois_targets(ds[0], rng)
    assert [(t.category, len(t.instances)) for t in t1] == [(1, 3)]  # the lone car is no MOIS target
    assert {m.tobytes() for m in t1[0].instances} == {m.tobytes() for m in cat_a}
    np.testing.assert_array_equal(t1[0].target, np.logical_or.reduce(cat_a))
    assert any(np.array_equal(t1[0].exemplar, m) for m in cat_a)
    t2 = build_mois_targets(ds[1], rng)
    assert [(t.category, len(t.instances)) for t in t2] == [(2, 2)]  # the crowd region is not an instance
    np.testing.assert_array_equal(t2[0].ignore, crowd)


def test_dios_clicks_follow_the_rules():
    mask = np.zeros((480, 640), bool)
    mask[100:380, 150:500] = True
    rng = np.random.default_rng(3)
    for _ in range(5):
        clicks = dios_clicks(mask, rng, n_clicks=12)
        first = clicks[0]
        # the first click is at the largest distance from the border (140 px: the box is 280 high)
        assert first.positive and min(first.y - 99, 380 - first.y, first.x - 149, 500 - first.x) == 140
        pts = [(c.y, c.x) for c in clicks]
        for i, (y, x) in enumerate(pts):
            c = clicks[i]
            assert mask[int(y), int(x)] == c.positive
            border = min(y - 100, 379 - y, x - 150, 499 - x) if c.positive else None
            if c.positive and i > 0:
                assert border >= 19
            for y2, x2 in pts[:i]:
                assert (y - y2) ** 2 + (x - x2) ** 2 >= 40 ** 2 - 1e-6
    assert len(dios_clicks(mask, rng, n_clicks=1)) == 1
    with pytest.raises(ValueError, match="empty"):
        dios_clicks(np.zeros((10, 10), bool), rng)


class _OracleRecaller:
    """Returns the category target (or nothing): known NoC without a network."""

    def __init__(self, target, perfect=True):
        self.target, self.perfect = target, perfect
        self.exemplar = None

    def set_image(self, image):
        pass

    def set_exemplar(self, mask, clicks=None):
        self.exemplar = (mask, clicks)

    def recall(self, clicks=None, prev_mask=None):
        m = self.target.copy() if self.perfect else np.zeros_like(self.target)
        return RecallResult(m.astype(np.float32), m, ndimage.label(m)[0], type(clicks)())


def _target():
    inst = [_box(60, 80, 5, 5, 20, 20), _box(60, 80, 30, 40, 50, 70)]
    return MoisTarget("t", 1, 0, inst)


def test_perfect_recall_needs_no_extra_click_and_empty_recall_fails():
    t = _target()
    image = np.zeros((60, 80, 3), np.uint8)
    good = evaluate_mois_target(_OracleRecaller(t.target), None, image, t, "additional", max_clicks=5)
    bad = evaluate_mois_target(_OracleRecaller(t.target, perfect=False), None, image, t, "additional", max_clicks=5)
    s = summarize_mois([good], max_clicks=5)
    assert s["NoC@90"] == 0 and s["mIoU+@0"] == 1 and s["NoFI@90"] == 0
    assert good.instance_f1 == (1.0, 1.0) and s["F1@end"] == 1
    s = summarize_mois([bad], max_clicks=5)
    assert s["NoC@90"] == 5 and s["NoFI@85"] == 1 and s["mIoU+@5"] == 0
    assert s["F1@start"] == 0 and s["F1@end"] == 0


def test_collective_counts_the_exemplar_clicks():
    t = _target()
    image = np.zeros((60, 80, 3), np.uint8)
    recaller = _OracleRecaller(t.target)
    res = evaluate_mois_target(recaller, Oracle(t.exemplar), image, t, "collective", max_clicks=5)
    assert res.exemplar_clicks == 1  # the oracle exemplar is perfect after one click
    assert summarize_mois([res], max_clicks=5)["NoC@90"] == 1
    np.testing.assert_array_equal(recaller.exemplar[0], t.exemplar)
    pred, clicks = make_exemplar(Oracle(np.zeros((60, 80), bool)), t.exemplar, None)
    assert len(clicks) == 2  # the second click gained nothing: stop


def test_sois_reference_clicks_the_whole_target():
    t = _target()
    res = evaluate_sois_reference(Oracle(t.target), np.zeros((60, 80, 3), np.uint8), t, max_clicks=5)
    assert res.ious[0] == 0 and res.ious[1] == 1
    assert summarize_mois([res], max_clicks=5)["NoC@85"] == 1
    assert res.instance_f1 == (0.0, 1.0)  # its final mask split into the two objects


def test_instance_f1_counts_objects_matched_above_half_iou():
    from napari_icmformer.metrics import instance_f1  # noqa: PLC0415

    gt = [_box(20, 20, 0, 0, 5, 5), _box(20, 20, 10, 10, 15, 15), _box(20, 20, 0, 10, 5, 15)]
    pred = np.zeros((20, 20), np.int32)
    pred[0:5, 0:5] = 1  # exact
    pred[10:15, 10:14] = 2  # IoU 0.8: a match
    pred[15:20, 0:3] = 3  # nothing there: a false positive; gt[2] is missed
    assert instance_f1(pred, gt) == pytest.approx(2 * 2 / 6)
    merged = np.zeros((20, 20), np.int32)
    merged[0:15, 0:15] = 1  # all three merged into one blob: matches none of them
    assert instance_f1(merged, gt) == 0
    assert instance_f1(np.zeros((20, 20), np.int32), []) == 1
    assert instance_f1(np.zeros((20, 20), np.int32), [np.zeros((20, 20), bool)]) == 1  # an empty GT is no object
    # overlapping GT instances (COCO polygons can overlap): the order does not matter
    small, big = _box(20, 20, 2, 2, 6, 6), _box(20, 20, 0, 0, 10, 10)
    both = np.zeros((20, 20), np.int32)
    both[0:10, 0:10], both[2:6, 2:6] = 2, 1
    assert instance_f1(both, [small, big]) == instance_f1(both, [big, small])
    # ignore: a prediction inside an ignored (crowd) region is not a false positive
    crowd = _box(20, 20, 15, 0, 20, 5)
    assert instance_f1(pred, gt, ignore=crowd) == pytest.approx(2 * 2 / 5)
    with pytest.raises(ValueError, match="one-to-one"):
        instance_f1(pred, gt, threshold=0.3)
