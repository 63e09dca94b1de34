"""Autosave: a process killed between commits leaves the last committed state on disk, and a
write killed half-way never leaves a corrupt file."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_icmformer import autosave
from napari_icmformer.autosave import AutosaveError, SeriesStore, atomic_write_bytes, label_bytes
from napari_icmformer.export import coco_to_labels
from napari_icmformer.series import ImageSeries

ROOT = Path(__file__).resolve().parents[1]
BOXES = [(2, 3, 10, 12), (20, 20, 30, 45), (12, 30, 18, 40), (31, 2, 38, 9), (1, 40, 6, 48)]

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from napari_icmformer.annotator import Annotator
    from napari_icmformer.series import ImageSeries

    series = ImageSeries.open(sys.argv[1], sys.argv[2])
    labels = series.objects(0, (40, 50))
    ann = Annotator(labels.shape, objects=labels)
    boxes = eval(sys.argv[3])
    for k, (y0, x0, y1, x1) in enumerate(boxes, start=1):
        prob = np.zeros(labels.shape, np.float32)
        prob[y0:y1, x0:x1] = 1
        ann.apply(ann.add_click((y0 + y1) / 2, (x0 + x1) / 2), prob)
        ann.commit()
        series.autosave(labels)
        if k == 3:  # then one undo, autosaved as well
            ann.undo()
            series.autosave(labels)
        print("committed", k, flush=True)
        sys.stdin.readline()  # wait between commits: the parent kills us here
""")


def _images(folder, n=2):
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((40, 50), 40 * i, np.uint8)).save(folder / f"im{i}.png")
    return folder


def expected_labels(commits: int) -> np.ndarray:
    labels = np.zeros((40, 50), np.int32)
    next_id = 1
    for k, (y0, x0, y1, x1) in enumerate(BOXES[:commits], start=1):
        if k == 3:
            continue  # committed, then undone
        region = labels[y0:y1, x0:x1]
        region[region == 0] = next_id
        next_id += 1
    return labels


def test_expected_labels_follow_the_annotator():
    # the reference the crash test compares with is the annotator's own behaviour (ids reused after undo)
    from tests.test_series import annotate

    labels = np.zeros((40, 50), np.int32)
    ann = annotate(labels, BOXES[:3])
    ann.undo()
    annotate(labels, BOXES[3:4])
    assert np.array_equal(labels, expected_labels(4))


@pytest.mark.parametrize("kill_after", [2, 4])
def test_killed_between_commits_leaves_the_last_committed_state(tmp_path, kill_after):
    images, save = _images(tmp_path / "imgs"), tmp_path / "save"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(images), str(save), repr(BOXES)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    try:
        for k in range(1, kill_after + 1):
            line = proc.stdout.readline()
            assert line.strip() == f"committed {k}", proc.stderr.read() if not line else line
            if k < kill_after:
                proc.stdin.write("\n")
                proc.stdin.flush()
        proc.send_signal(signal.SIGKILL)  # napari killed: no clean-up runs
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    want = expected_labels(kill_after)
    store = SeriesStore(save, sorted((tmp_path / "imgs").iterdir()))
    assert np.array_equal(store.load(0), want)
    assert np.array_equal(coco_to_labels(json.loads((save / "objects.json").read_text())), want)
    resumed = ImageSeries.resume(save)
    assert np.array_equal(resumed.objects(0, (40, 50)), want)
    assert resumed.progress() == f"image 1 of 2, {len(np.unique(want)) - 1} objects"


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from napari_icmformer.autosave import atomic_write_bytes, label_bytes

    k = 0
    while True:
        k += 1
        atomic_write_bytes(__import__("pathlib").Path(sys.argv[1]), label_bytes(np.full((600, 700), k, np.int32)))
        if k == 1:
            print("first", flush=True)
""")


def test_a_write_killed_half_way_never_leaves_a_corrupt_file(tmp_path):
    import tifffile

    target = tmp_path / "labels.tif"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    rng = np.random.default_rng(0)
    for _ in range(5):  # killed at random moments, usually in the middle of a write
        proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, env=env,
                                cwd=ROOT, text=True)
        assert proc.stdout.readline().strip() == "first"
        time.sleep(float(rng.uniform(0.01, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        data = tifffile.imread(target)  # always a whole file: one complete version
        assert data.shape == (600, 700) and data.min() == data.max() >= 1


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(autosave.os, "replace", broken)
    with pytest.raises(AutosaveError, match="No space left"):
        atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]  # no temporary file left behind


def test_stale_partial_files_are_cleaned_on_reopen(tmp_path):
    images = sorted(_images(tmp_path / "imgs").iterdir())
    store = SeriesStore(tmp_path / "save", images)
    store.save(0, np.ones((40, 50), np.int32))
    stale = store.label_path(0).with_name(f".{store.label_path(0).name}.part")
    stale.write_bytes(label_bytes(np.ones((40, 50), np.int32))[:100])  # a write killed half-way
    SeriesStore(tmp_path / "save", images)
    assert not stale.exists() and store.load(0).sum() == 40 * 50
