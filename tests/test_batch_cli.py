"""icmformer-batch: one output per input, bad inputs reported without stopping, bad arguments exit 2."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage.draw import disk

from napari_icmformer.checkpoints import save_checkpoint
from napari_icmformer.cli import batch
from napari_icmformer.export import labels_to_coco
from tests.test_icmformer_pp import tiny_pp


@pytest.fixture(scope="module")
def pp_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "pp.pt", tiny_pp())


def _nuclei(shape, centres, r=8):
    img = np.full(shape, 30, np.uint8)
    labels = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        rr, cc = disk((cy, cx), r, shape=shape)
        img[rr, cc] = 200
        labels[rr, cc] = k
    return img, labels


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    a, labels = _nuclei((60, 70), [(15, 15), (40, 50)])
    Image.fromarray(a).save(d / "a.png")
    Image.fromarray(_nuclei((80, 64), [(20, 20), (60, 40)])[0]).save(d / "b.png")
    tifffile.imwrite(d / "c.tif", np.stack([_nuclei((50, 50), [(25, 25)])[0]] * 2))  # a 2-slice stack
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "a_labels.png")
    return d


def test_one_output_per_input_and_bad_inputs_reported(folder, tmp_path, pp_checkpoint, capsys):
    out = tmp_path / "out"
    code = batch.main([str(folder), "--exemplar-image", str(folder / "a.png"), "--exemplar-mask",
                       str(tmp_path / "a_labels.png"), "--exemplar-id", "2", "--out", str(out),
                       "--checkpoint", str(pp_checkpoint)])
    err = capsys.readouterr().err
    assert code == 2  # one input could not be read: the others are written, and the run says so
    assert "skipped" in err and "broken.png" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_proposals.tif", "b_proposals.tif", "c_proposals.tif"]
    assert tifffile.imread(out / "a_proposals.tif").shape == (60, 70)
    assert tifffile.imread(out / "b_proposals.tif").shape == (80, 64)
    stack = tifffile.imread(out / "c_proposals.tif")
    assert stack.shape == (2, 50, 50) and stack.dtype == np.int32
    # existing outputs are refused before any work, replaced with --overwrite
    again = [str(folder / "a.png"), str(folder / "b.png"), "--exemplar-image", str(folder / "a.png"),
             "--exemplar-mask", str(tmp_path / "a_labels.png"), "--exemplar-id", "1", "--out", str(out),
             "--checkpoint", str(pp_checkpoint)]
    assert batch.main(again) == 2
    assert "already exist" in capsys.readouterr().err
    assert batch.main([*again, "--overwrite", "--format", "json"]) == 0
    data = json.loads((out / "b_proposals.json").read_text())
    assert data["images"][0]["file_name"] == "b.png"


def test_exemplar_from_a_series_coco_json(folder, tmp_path, pp_checkpoint):
    _, labels = _nuclei((60, 70), [(15, 15), (40, 50)])
    coco = labels_to_coco(labels, name="a.png")
    other = labels_to_coco(np.zeros((80, 64), np.int32), name="b.png")
    series = {**coco, "images": [*coco["images"], {**other["images"][0], "id": 2}]}
    (tmp_path / "objects.json").write_text(json.dumps(series))
    out = tmp_path / "o"
    assert batch.main([str(folder / "b.png"), "--exemplar-image", str(folder / "a.png"), "--exemplar-coco",
                       str(tmp_path / "objects.json"), "--exemplar-id", "1", "--out", str(out),
                       "--checkpoint", str(pp_checkpoint)]) == 0
    assert [p.name for p in out.iterdir()] == ["b_proposals.tif"]


@pytest.mark.parametrize("extra, message", [
    (["--exemplar-id", "0"], "must be an integer >= 1"),
    (["--exemplar-id", "7"], "no object with id 7"),
    ([], "holds 2 objects"),
    (["--threshold", "1.5"], "must be a number in (0, 1)"),
])
def test_bad_arguments_exit_2_without_output(folder, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        code = batch.main([str(folder), "--exemplar-image", str(folder / "a.png"), "--exemplar-mask",
                           str(tmp_path / "a_labels.png"), "--out", str(out), *extra])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_missing_exemplar_and_empty_folder(tmp_path, folder, capsys):
    assert batch.main([str(folder), "--exemplar-image", str(tmp_path / "none.png"), "--exemplar-mask",
                       str(tmp_path / "a_labels.png"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert batch.main([str(empty), "--exemplar-image", str(folder / "a.png"), "--exemplar-mask",
                       str(tmp_path / "a_labels.png"), "--out", str(tmp_path / "o")]) == 2
    assert "holds no images" in capsys.readouterr().err
