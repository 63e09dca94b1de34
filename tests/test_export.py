import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from napari_icmformer.export import (
    CocoExportError,
    coco_to_labels,
    get_coco_reader,
    labels_to_coco,
    load_coco,
    save_coco,
    write_labels_coco,
)


def _labels() -> np.ndarray:
    lab = np.zeros((40, 60), np.int32)
    lab[2:10, 3:20] = 1
    lab[15:30, 30:55] = 5  # ids need not be consecutive
    lab[20:25, 5:12] = 2
    lab[22, 8] = 0  # a hole
    return lab


def test_pycocotools_reads_the_export_back_identically(tmp_path):
    lab = _labels()
    path = save_coco(tmp_path / "objects.json", lab, category="nucleus")
    coco = COCO(str(path))
    anns = coco.loadAnns(coco.getAnnIds())
    assert sorted(a["label_id"] for a in anns) == [1, 2, 5]
    for a in anns:
        np.testing.assert_array_equal(coco.annToMask(a).astype(bool), lab == a["label_id"])
        assert a["area"] == (lab == a["label_id"]).sum()
    assert coco.loadCats(1)[0]["name"] == "nucleus"
    np.testing.assert_array_equal(load_coco(path), lab)


def test_stack_round_trip_keeps_slices_and_ids(tmp_path):
    stack = np.zeros((3, 40, 60), np.int32)
    stack[0] = _labels()
    stack[2, 5:9, 5:9] = 7
    data = labels_to_coco(stack)
    assert [im["slice"] for im in data["images"]] == [[0], [1], [2]]
    np.testing.assert_array_equal(coco_to_labels(data), stack)


def test_napari_writer_and_reader(tmp_path):
    lab = _labels()
    [out] = write_labels_coco(str(tmp_path / "l.json"), lab, {"name": "cells"})
    reader = get_coco_reader(out)
    [(data, meta, kind)] = reader(out)
    assert kind == "labels" and meta["name"] == "l"
    np.testing.assert_array_equal(data, lab)
    assert get_coco_reader(str(tmp_path / "x.png")) is None
    (tmp_path / "other.json").write_text(json.dumps({"a": 1}))
    assert get_coco_reader(str(tmp_path / "other.json")) is None


@pytest.mark.parametrize("bad", [np.zeros(5, np.int32), np.zeros((4, 4), np.float32), -np.ones((4, 4), np.int32)])
def test_bad_labels_are_refused(bad):
    with pytest.raises(CocoExportError):
        labels_to_coco(bad)


def test_bad_json_gives_a_clear_error(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(CocoExportError, match="broken.json"):
        load_coco(p)
    two = {"images": [{"id": 1, "height": 4, "width": 4}, {"id": 2, "height": 4, "width": 4}], "annotations": []}
    with pytest.raises(CocoExportError, match="2 separate images"):
        coco_to_labels(two)


def test_polygon_annotations_are_read():
    data = {"images": [{"id": 1, "height": 20, "width": 20}],
            "annotations": [{"id": 1, "image_id": 1, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]}]}
    lab = coco_to_labels(data)
    assert lab[7, 7] == 1 and lab[15, 15] == 0


def test_coco_rle_from_boxes_is_exactly_pycocotools():
    """The per-box RLE (no full-image mask per object) gives pycocotools' own strings, also for
    objects touching every border and running from one column's bottom into the next's top."""
    from pycocotools import mask as mask_utils  # noqa: PLC0415

    from napari_icmformer.export import labels_to_coco  # noqa: PLC0415

    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        lab = (rng.random((h, w)) < rng.uniform(0.1, 0.9)).astype(np.int32) * rng.integers(1, 4, (h, w))
        coco = labels_to_coco(lab)
        for ann in coco["annotations"]:
            ref = mask_utils.encode(np.asfortranarray((lab == ann["label_id"]).astype(np.uint8)))
            assert ann["segmentation"]["counts"] == ref["counts"].decode("ascii")
            assert ann["area"] == float(mask_utils.area(ref))
            checked += 1
    assert checked > 100
