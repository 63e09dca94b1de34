"""Image series: navigation keeps each image's objects exactly; resume from the save folder."""

import numpy as np
import pytest
from PIL import Image

from napari_icmformer.annotator import Annotator
from napari_icmformer.autosave import AutosaveError, SeriesStore
from napari_icmformer.series import ImageSeries, SeriesError, list_images, read_image_file, spatial_shape


def make_folder(folder, n=3, shape=(40, 50)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(folder / f"img_{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def annotate(labels, boxes):
    """Commit one object per box through the Annotator (as the widget does)."""
    ann = Annotator(labels.shape, objects=labels)
    for y0, x0, y1, x1 in boxes:
        prob = np.zeros(labels.shape, np.float32)
        prob[y0:y1, x0:x1] = 1
        job = ann.add_click((y0 + y1) / 2, (x0 + x1) / 2)
        ann.apply(job, prob)
        ann.commit()
    return ann


def test_list_images_folder_and_list(tmp_path):
    folder = make_folder(tmp_path / "imgs")
    paths = list_images(folder)
    assert [p.name for p in paths] == ["img_0.png", "img_1.png", "img_2.png"]
    assert list_images([paths[2], paths[0]]) == [paths[2], paths[0]]
    with pytest.raises(SeriesError, match="not found"):
        list_images([tmp_path / "nope.png"])
    with pytest.raises(SeriesError, match="holds no images"):
        list_images(tmp_path / "imgs" / "..")
    with pytest.raises(SeriesError, match="not a folder"):
        list_images(str(tmp_path / "missing"))
    with pytest.raises(SeriesError, match="cannot read"):
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"not a png")
        read_image_file(bad)


def test_read_image_keeps_16_bit_and_stacks(tmp_path):
    import tifffile

    stack = np.arange(2 * 8 * 9, dtype=np.uint16).reshape(2, 8, 9) * 300
    tifffile.imwrite(tmp_path / "s.tif", stack)
    out = read_image_file(tmp_path / "s.tif")
    assert out.dtype == np.uint16 and np.array_equal(out, stack) and spatial_shape(out) == (2, 8, 9)
    assert spatial_shape(np.zeros((5, 6, 3))) == (5, 6)


def test_navigation_saves_and_restores_exact_labels(tmp_path):
    folder = make_folder(tmp_path / "imgs")
    series = ImageSeries.open(folder)
    assert series.progress() == "image 1 of 3, 0 objects"
    first = series.objects(0, (40, 50))
    annotate(first, [(2, 3, 10, 12), (20, 20, 30, 45)])
    expected0 = first.copy()
    series.next(first)
    second = series.objects(1, (40, 50))
    assert not second.any()
    annotate(second, [(5, 5, 15, 15)])
    second[30:35, 1:4] = 9  # a hand-painted object counts as well
    expected1 = second.copy()
    series.previous(second)
    assert series.index == 0
    back = series.objects(0, (40, 50))
    assert back.dtype == np.int32 and np.array_equal(back, expected0)
    assert series.progress() == "image 1 of 3, 2 objects"
    back[0, 0] = 77  # editing what is shown ...
    series.go(1, back)
    assert np.array_equal(series.objects(1, (40, 50)), expected1)
    assert series.progress() == "image 2 of 3, 2 objects"
    series.go(0)
    assert series.objects(0, (40, 50))[0, 0] == 77  # ... was kept when the image was left
    with pytest.raises(SeriesError, match="outside"):
        series.go(3)
    assert series.next(series.objects(0, (40, 50))) == 1 and series.next() == 2 and series.next() == 2


def test_autosave_and_resume_from_the_save_folder(tmp_path):
    folder = make_folder(tmp_path / "imgs")
    save = tmp_path / "save"
    series = ImageSeries.open(folder, save)
    labels = series.objects(0, (40, 50))
    ann = annotate(labels, [(2, 3, 10, 12)])
    assert series.autosave(labels)
    series.next(labels)
    labels1 = series.objects(1, (40, 50))
    annotate(labels1, [(1, 1, 5, 5), (10, 10, 20, 20)])
    series.autosave(labels1)
    ann.undo()  # an undo on image 0 after leaving it is not the user's flow; the disk keeps what was saved
    resumed = ImageSeries.resume(save)
    assert resumed.index == 1 and len(resumed) == 3
    assert np.array_equal(resumed.objects(1, (40, 50)), labels1)
    assert resumed.count(0) == 1 and resumed.count(2) is None
    assert resumed.progress() == "image 2 of 3, 2 objects"
    # opening the same folder with the same images resumes too; another series is refused
    again = ImageSeries.open(folder, save)
    assert again.index == 1
    with pytest.raises(AutosaveError, match="another series"):
        ImageSeries.open(list_images(folder)[:2], save)  # a saved image is missing from the list
    # an image added to the folder later joins the series at the end; saved indices keep their image
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(folder / "img_00.png")  # sorts before img_0
    grown = ImageSeries.open(folder, save)
    assert [p.name for p in grown.paths] == ["img_0.png", "img_1.png", "img_2.png", "img_00.png"]
    assert np.array_equal(grown.objects(1, (40, 50)), labels1) and ImageSeries.resume(save).paths == grown.paths
    import json

    coco = json.loads((save / "objects.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["img_0.png", "img_1.png"]
    assert len(coco["annotations"]) == 3
    assert {a["image_id"] for a in coco["annotations"]} == {1, 2}


def test_a_folder_with_foreign_files_is_refused(tmp_path):
    folder = make_folder(tmp_path / "imgs")
    with pytest.raises(AutosaveError, match="not a napari-icmformer series"):
        ImageSeries.open(folder, folder)  # the image folder itself: its files are the user's
    user = tmp_path / "user"
    user.mkdir()
    (user / "objects.json").write_text("{}")  # the user's own file, named like ours
    with pytest.raises(AutosaveError, match="objects.json"):
        SeriesStore(user, list_images(folder))
    assert (user / "objects.json").read_text() == "{}"
    with pytest.raises(AutosaveError, match="holds no napari-icmformer series"):
        ImageSeries.resume(user)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(AutosaveError, match="is a file"):
        SeriesStore(tmp_path / "afile", list_images(folder))
