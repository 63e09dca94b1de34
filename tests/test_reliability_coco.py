"""Issue 16.4 / 16.5 / 16.13: the COCO reader validates before pycocotools decodes, keeps every
instance, and the writer never replaces a file silently nor raises a raw OSError."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from napari_icmformer.data import DatasetError, open_dataset
from napari_icmformer.export import (
    CocoExportError,
    CocoFileExistsError,
    coco_to_label_layers,
    coco_to_labels,
    get_coco_reader,
    load_coco,
    save_coco,
    write_labels_coco,
)


def _one_image(annotations, h=20, w=30):
    return {"images": [{"id": 1, "file_name": "a.png", "height": h, "width": w}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, **a} for i, a in enumerate(annotations)]}


def _square(y0, x0, y1, x1):
    return {"segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]}


@pytest.fixture
def guarded_pycocotools(monkeypatch):
    """pycocotools never sees a polygon far outside the image (it allocates without bound)."""
    real = mask_utils.frPyObjects

    def guarded(obj, h, w):
        if isinstance(obj, list):
            for poly in obj:
                if isinstance(poly, list) and any(abs(v) > 4 * (h + w) for v in poly):
                    raise AssertionError("an unvalidated polygon reached pycocotools")
        return real(obj, h, w)

    monkeypatch.setattr(mask_utils, "frPyObjects", guarded)


def test_huge_polygon_coordinate_is_refused_before_decoding(guarded_pycocotools):
    data = _one_image([{"segmentation": [[2, 2, 12, 2, 1e12, 12, 2, 12]]}])
    with pytest.raises(CocoExportError, match="far outside"):
        coco_to_labels(data)


def test_dataset_reader_refuses_a_huge_polygon_too(tmp_path, guarded_pycocotools):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(_one_image([{"segmentation": [[2, 2, 12, 2, -1e9, 12, 2, 12]], "iscrowd": 0}])))
    ds = open_dataset(str(path))
    with pytest.raises(DatasetError, match="far outside"):
        ds[0]


_CRASHERS = {
    # the rleFrPoly allocation that killed the process
    "huge_polygon": {"segmentation": [[2, 2, 12, 2, 1e12, 12, 2, 12]]},
    # a compressed RLE of a 200x200 mask in a 20x30 image: pycocotools would write past the mask
    "rle_too_long": {"segmentation": {"size": [20, 30], "counts": mask_utils.encode(
        np.asfortranarray(np.ones((200, 200), np.uint8)))["counts"].decode()}},
}


@pytest.mark.parametrize("case", sorted(_CRASHERS))
def test_crashing_files_give_an_error_not_a_dead_process(tmp_path, case):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_one_image([_CRASHERS[case]])))
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        from napari_icmformer.export import CocoExportError, load_coco
        try:
            load_coco({str(path)!r})
        except CocoExportError as exc:
            print("refused:", exc)
            sys.exit(0)
        sys.exit(1)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, f"rc {run.returncode}: {run.stderr[-500:]}"
    assert "refused:" in run.stdout and "bad.json" in run.stdout


def test_overlapping_instances_are_kept_not_painted_over(tmp_path):
    data = _one_image([_square(2, 2, 12, 12), _square(5, 5, 15, 20), _square(0, 25, 5, 29)])
    with pytest.raises(CocoExportError, match="overlap"):
        coco_to_labels(data)  # one label image would lose pixels of an object
    layers = coco_to_label_layers(data)
    assert len(layers) == 2
    for n, ann in enumerate(data["annotations"], start=1):
        expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], 20, 30))) > 0
        assert any(np.array_equal(layer == n, expected) for layer in layers), f"object {n} lost"
    path = tmp_path / "overlap.json"
    path.write_text(json.dumps(data))
    read = get_coco_reader(str(path))(str(path))
    assert len(read) == 2 and all(kind == "labels" for _, _, kind in read)
    assert read[0][1]["name"] == "overlap" and "overlapping" in read[1][1]["name"]
    assert sorted(int(i) for lab, _, _ in read for i in np.unique(lab) if i) == [1, 2, 3]


def test_same_label_id_may_touch_itself():
    data = _one_image([{**_square(2, 2, 12, 12), "label_id": 4}, {**_square(5, 5, 15, 20), "label_id": 4}])
    lab = coco_to_labels(data)
    assert set(np.unique(lab)) == {0, 4}


_MALFORMED = {
    "no images": ({"annotations": []}, "'images'"),
    "images not a list": ({"images": {"id": 1}, "annotations": []}, "'images'"),
    "image without height": ({"images": [{"id": 1, "width": 4}], "annotations": []}, "height"),
    "negative width": ({"images": [{"id": 1, "height": 4, "width": -4}], "annotations": []}, "width"),
    "size beyond bounds": ({"images": [{"id": 1, "height": 100000, "width": 100000}], "annotations": []},
                           "height|pixels"),
    "image id missing": ({"images": [{"height": 4, "width": 4}], "annotations": []}, "'id'"),
    "duplicate image id": ({"images": [{"id": 1, "height": 4, "width": 4, "slice": [0]},
                                       {"id": 1, "height": 4, "width": 4, "slice": [1]}], "annotations": []},
                           "twice"),
    "unknown image_id": (_one_image([]) | {"annotations": [{"id": 1, "image_id": 9, "segmentation": []}]},
                         "image_id 9"),
    "annotation without segmentation": (_one_image([]) | {"annotations": [{"id": 1, "image_id": 1}]},
                                        "segmentation"),
    "rle size mismatch": (_one_image([{"segmentation": {"size": [10, 10], "counts": [100]}}]), "does not match"),
    "negative counts": (_one_image([{"segmentation": {"size": [20, 30], "counts": [700, -100]}}]), "negative"),
    "counts too short": (_one_image([{"segmentation": {"size": [20, 30], "counts": [10, 5]}}]), "cover 15"),
    "bad rle string": (_one_image([{"segmentation": {"size": [20, 30], "counts": "\u00ff\u00ff"}}]), "RLE"),
    "label id beyond int32": (_one_image([{**_square(1, 1, 5, 5), "label_id": 2**40}]), "label_id"),
    "label id zero": (_one_image([{**_square(1, 1, 5, 5), "label_id": 0}]), "label_id"),
    "odd polygon": (_one_image([{"segmentation": [[1, 1, 5, 1, 5]]}]), "odd"),
    "nan polygon": (_one_image([{"segmentation": [[1, 1, 5, 1, float("nan"), 5]]}]), "NaN"),
    "polygon of strings": (_one_image([{"segmentation": [["1", "1", "5", "1", "5", "5"]]}]), "numbers"),
    "bad slice": ({"images": [{"id": 1, "height": 4, "width": 4, "slice": [-1]}], "annotations": []}, "slice"),
}


@pytest.mark.parametrize("case", sorted(_MALFORMED))
def test_malformed_json_gives_one_clear_error(case):
    data, match = _MALFORMED[case]
    with pytest.raises(CocoExportError, match=match) as info:
        coco_to_labels(data)
    assert "\n" not in str(info.value)


def test_dataset_reader_names_the_missing_key(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                "annotations": [{"id": 1, "image_id": 1}]}))
    with pytest.raises(DatasetError, match="segmentation"):
        open_dataset(str(path))


def test_save_coco_never_replaces_a_file_silently(tmp_path):
    lab = np.zeros((8, 8), np.int32)
    lab[2:5, 2:5] = 3
    path = tmp_path / "objects.json"
    path.write_text("my precious annotations")
    with pytest.raises(CocoFileExistsError, match="already exists"):
        save_coco(path, lab)
    assert path.read_text() == "my precious annotations"
    save_coco(path, lab, overwrite=True)
    np.testing.assert_array_equal(load_coco(path), lab)
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_napari_writer_replaces_after_napari_asked(tmp_path):
    """napari's Save dialog confirms a replacement itself: the writer then replaces (atomically)."""
    lab = np.zeros((8, 8), np.int32)
    lab[2:5, 2:5] = 3
    path = tmp_path / "objects.json"
    path.write_text("old")
    write_labels_coco(str(path), lab, {"name": "x"})
    np.testing.assert_array_equal(load_coco(path), lab)


def test_save_coco_turns_os_errors_into_clear_ones(tmp_path):
    lab = np.ones((4, 4), np.int32)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(CocoExportError, match="cannot save"):
        save_coco(tmp_path / "a_file" / "sub" / "o.json", lab)  # a parent is a file
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(CocoExportError, match="folder"):
        save_coco(tmp_path / "folder.json", lab, overwrite=True)
    with pytest.raises(CocoExportError, match="not found"):
        load_coco(tmp_path / "missing.json")
