import numpy as np
import pytest
from PIL import Image

from napari_icmformer.data import DatasetError, open_dataset


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _rgb(h=20, w=30):
    return np.full((h, w, 3), 90, np.uint8)


def test_grabcut_band_is_ignore_and_object_above_128(tmp_path):
    gt = np.zeros((20, 30), np.uint8)
    gt[5:15, 5:20] = 255
    gt[4, 5:20] = 128
    _save(tmp_path / "GrabCut" / "data_GT" / "a.jpg", _rgb())
    _save(tmp_path / "GrabCut" / "boundary_GT" / "a.bmp", gt)
    s = open_dataset("GrabCut", tmp_path)[0]
    np.testing.assert_array_equal(s.masks[0], gt == 255)
    np.testing.assert_array_equal(s.ignore, gt == 128)


def test_berkeley_rgb_masks_threshold_channel0(tmp_path):
    m = np.zeros((20, 30, 3), np.uint8)
    m[2:8, 2:8, 0] = 255
    m[10:12, 10:12, 0] = 100  # ≤ 128 on channel 0: background
    m[15:18, 15:18, 1] = 255  # other channels do not count
    _save(tmp_path / "Berkeley" / "images" / "b.jpg", _rgb())
    _save(tmp_path / "Berkeley" / "masks" / "b.png", m)
    s = open_dataset("Berkeley", tmp_path)[0]
    assert s.masks[0].sum() == 36 and s.ignore is None


def test_img_gt_any_nonzero_and_instance_labels(tmp_path):
    gt = np.zeros((20, 30), np.uint8)
    gt[3:6, 3:6] = 1
    _save(tmp_path / "davis" / "img" / "x.jpg", _rgb())
    _save(tmp_path / "davis" / "gt" / "x.png", gt)
    assert open_dataset(str(tmp_path / "davis"))[0].masks[0].sum() == 9
    lab = np.zeros((20, 30), np.uint16)
    lab[1:4, 1:4], lab[10:15, 20:25] = 3, 700
    _save(tmp_path / "cells" / "images" / "c.png", _rgb())
    _save(tmp_path / "cells" / "labels" / "c.png", lab)
    s = open_dataset(str(tmp_path / "cells"))[0]
    assert sorted(int(m.sum()) for m in s.masks) == [9, 25]


def test_clear_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        open_dataset(str(tmp_path / "nothing"))
    _save(tmp_path / "d" / "img" / "a.jpg", _rgb())
    _save(tmp_path / "d" / "img" / "b.jpg", _rgb())
    _save(tmp_path / "d" / "gt" / "a.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(DatasetError, match=r"no mask .* for image .*b\.jpg"):
        open_dataset(str(tmp_path / "d"))
    _save(tmp_path / "d" / "gt" / "b.png", np.zeros((21, 30), np.uint8))
    ds = open_dataset(str(tmp_path / "d"))
    with pytest.raises(DatasetError, match=r"b\.png"):
        ds[1]
    (tmp_path / "e" / "img").mkdir(parents=True)
    (tmp_path / "e" / "gt").mkdir()
    (tmp_path / "e" / "img" / "c.jpg").write_bytes(b"not a jpeg")
    _save(tmp_path / "e" / "gt" / "c.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(DatasetError, match=r"cannot read image .*c\.jpg"):
        open_dataset(str(tmp_path / "e"))[0]
    with pytest.raises(DatasetError, match="needs --data-root"):
        open_dataset("GrabCut")


def test_slices_select_a_split(tmp_path):
    for i in range(5):
        _save(tmp_path / "s" / "img" / f"{i}.jpg", _rgb())
        _save(tmp_path / "s" / "gt" / f"{i}.png", np.full((20, 30), i, np.uint8))
    root = str(tmp_path / "s")
    assert [open_dataset(root + "[3:]")[k].name for k in range(2)] == ["3", "4"]
    assert len(open_dataset(root + "[:-1]")) == 4
    with pytest.raises(DatasetError, match="selects no images"):
        open_dataset(root + "[9:]")


def test_coco_json_path_finds_its_images(tmp_path):
    import json  # noqa: PLC0415

    from pycocotools import mask as mask_utils  # noqa: PLC0415

    m = np.zeros((20, 30), np.uint8)
    m[2:9, 3:12] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    _save(tmp_path / "coco" / "val2017" / "000001.jpg", _rgb())
    ann = {"images": [{"id": 1, "file_name": "000001.jpg", "height": 20, "width": 30}],
           "categories": [{"id": 4, "name": "cell"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "iscrowd": 0, "area": 63.0, "bbox": [3, 2, 9, 7],
                            "segmentation": {"size": [20, 30], "counts": rle["counts"].decode()}}]}
    path = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(ann))
    s = open_dataset(str(path))[0]
    assert s.categories == [4] and s.masks[0].sum() == 63
