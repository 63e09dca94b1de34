import numpy as np
import pytest

from napari_icmformer.annotator import Annotator


def disk_predict(clicks, prev):
    """A stand-in model: a disk of radius 6 around each positive click, minus negatives."""
    yy, xx = np.mgrid[:40, :50]
    prob = np.zeros((40, 50), np.float32)
    for c in clicks:
        d = (yy - c.y) ** 2 + (xx - c.x) ** 2 <= 36
        prob[d] = 1.0 if c.positive else 0.0
    return prob


def click(ann, y, x, positive=True):
    job = ann.add_click(y, x, positive)
    assert ann.apply(job, Annotator.run(job, disk_predict))


def test_click_changes_the_mask_where_it_should():
    ann = Annotator((40, 50))
    click(ann, 20, 20)
    assert ann.current_mask[20, 20] and not ann.current_mask[0, 0]


def test_commit_new_ids_never_overwrite_existing_labels():
    objects = np.zeros((40, 50), np.int32)
    objects[18:23, 18:23] = 5  # a label the user committed before
    before = objects.copy()
    ann = Annotator((40, 50), objects=objects)
    click(ann, 20, 22)
    new_id = ann.commit()
    assert new_id == 6
    assert (ann.objects[before == 5] == 5).all()  # untouched
    assert (ann.objects == 6).sum() > 0 and len(ann.clicks) == 0
    click(ann, 30, 40)
    assert ann.commit() == 7
    click(ann, 20, 22)
    assert ann.commit(overwrite=True) == 8 and (ann.objects[18:23, 18:23] == 8).all()


def test_undo_restores_exact_arrays():
    ann = Annotator((40, 50))
    click(ann, 10, 10)
    prob1 = ann.prob.copy()
    click(ann, 12, 30, positive=False)
    assert ann.undo() == "click"
    np.testing.assert_array_equal(ann.prob, prob1)
    assert len(ann.clicks) == 1
    labels_before = ann.objects.copy()
    ann.commit()
    assert ann.undo() == "commit"
    np.testing.assert_array_equal(ann.objects, labels_before)
    np.testing.assert_array_equal(ann.prob, prob1)
    ann.clear()
    assert ann.prob is None and ann.undo() == "clear" and len(ann.clicks) == 1
    assert ann.undo() == "click" and ann.prob is None and ann.undo() is None


def test_stale_results_are_dropped():
    ann = Annotator((40, 50))
    job1 = ann.add_click(10, 10)
    job2 = ann.add_click(30, 30)
    assert not ann.apply(job1, Annotator.run(job1, disk_predict))  # superseded by the newer click
    assert ann.prob is None
    assert ann.apply(job2, Annotator.run(job2, disk_predict))
    assert ann.current_mask[30, 30] and ann.current_mask[10, 10]


def test_bad_clicks_and_shapes():
    ann = Annotator((40, 50))
    with pytest.raises(ValueError, match="outside the image"):
        ann.add_click(45, 3)
    with pytest.raises(ValueError, match="does not match"):
        Annotator((40, 50), objects=np.zeros((10, 10), np.int32))
    assert ann.commit() == 0  # nothing to commit
