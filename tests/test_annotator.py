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


def test_undo_history_stays_small_and_exact_over_many_commits():
    """1000 small commits on a 0.4 MP image: the history holds diffs, not full copies, and
    every undo restores the exact labels."""
    shape = (600, 700)
    ann = Annotator(shape)
    rng = np.random.default_rng(0)
    snapshots = []
    for _ in range(1000):
        y, x = rng.integers(0, 590), rng.integers(0, 690)
        ann.prob = np.zeros(shape, np.float32)
        ann.prob[y:y + 8, x:x + 8] = 1
        before = ann.objects.copy() if len(snapshots) % 97 == 0 else None
        if ann.commit():  # 0 when the box lies entirely on earlier objects: no undo step
            snapshots.append(before)
    assert len(snapshots) > 900
    assert ann.undo_bytes < 5 * 2**20  # 1000 full int32 + float32 copies would be 3.4 GB
    for i in range(len(snapshots) - 1, -1, -1):
        assert ann.undo() == "commit"
        if snapshots[i] is not None:
            np.testing.assert_array_equal(ann.objects, snapshots[i])
    assert not ann.objects.any()


def test_undo_history_is_capped_in_bytes():
    ann = Annotator((200, 200), max_undo_bytes=200 * 200 * 4 * 3)  # room for about three probabilities
    for k in range(10):
        job = ann.add_click(100, 10 + k)
        ann.apply(job, np.full((200, 200), 0.7, np.float32))
    assert ann.undo_bytes <= 200 * 200 * 4 * 3
    undone = 0
    while ann.undo():
        undone += 1
    assert 2 <= undone < 10  # the oldest steps were dropped, the newest kept


def test_ids_come_from_the_shared_source_and_overflow_is_refused():
    counter = iter(range(50, 100))
    ann = Annotator((40, 50), next_id=lambda: next(counter))
    click(ann, 20, 20)
    assert ann.commit() == 50
    small = Annotator((40, 50), objects=np.full((40, 50), 0, np.uint8))
    small.objects[0, 0] = 255
    click(small, 20, 20)
    with pytest.raises(ValueError, match="does not fit"):
        small.commit()
    assert small.objects[20, 20] == 0
    assert small.undo() == "click" and not small.can_undo  # the refused commit left no undo step


class _Result:
    def __init__(self, instances):
        self.instances = instances
        self.prob = (instances > 0).astype(np.float32)


def test_recall_annotator_undo_and_accept_without_qt():
    from napari_icmformer.annotator import RecallAnnotator  # noqa: PLC0415

    ann = Annotator((40, 50))
    rec = RecallAnnotator(ann)
    with pytest.raises(ValueError, match="Commit an object first"):
        rec.start()
    click(ann, 10, 10)
    assert ann.commit() == 1
    job = rec.start()
    assert rec.active and job.exemplar[10, 10] and job.exemplar_id == 1
    first = np.zeros((40, 50), np.int32)
    first[25:35, 25:35] = 1
    first[8:13, 8:13] = 2  # on the exemplar: dropped from the proposals
    assert rec.apply(job, _Result(first))
    assert set(np.unique(rec.proposals())) == {0, 1}
    stale = rec.add_click(30, 5)
    newer = rec.add_click(30, 45)
    second = first.copy()
    second[28:32, 42:48] = 3
    assert not rec.apply(stale, _Result(first))  # superseded
    assert rec.apply(newer, _Result(second))
    # the stale click's result never arrived: stepping back over it shows the first proposals
    assert rec.undo() == "recall click" and len(rec.clicks) == 1 and rec.result.instances is first
    assert rec.undo() == "recall click" and len(rec.clicks) == 0 and rec.result.instances is first
    rec.result = _Result(second)
    before = ann.objects.copy()
    ids = rec.accept()
    assert ids == [2, 3] and not rec.active
    assert (ann.objects[25:35, 25:35] == 2).all() and (ann.objects[28:32, 42:48] == 3).all()
    assert ann.undo() == "accept"
    np.testing.assert_array_equal(ann.objects, before)
    with pytest.raises(ValueError, match="Nothing to accept"):
        rec.accept()


def test_the_annotator_and_the_engine_share_one_rule_for_on_the_image():
    """A click the annotator accepts is one the engine accepts: [-0.5, H - 0.5) per axis."""
    from napari_icmformer.runtime import check_clicks  # noqa: PLC0415
    from src_models import Clicks  # noqa: PLC0415

    for y, x, inside in ((-0.5, 0.0, True), (-0.51, 0.0, False), (39.49, 49.49, True), (39.5, 3.0, False),
                         (39.7, 3.0, False), (3.0, 49.6, False), (float("nan"), 1.0, False)):
        ann = Annotator((40, 50))
        if inside:
            ann.add_click(y, x)
            check_clicks(Clicks().add(y, x), (40, 50))
        else:
            with pytest.raises(ValueError, match="outside the image"):
                ann.add_click(y, x)
            with pytest.raises(ValueError):
                check_clicks(Clicks().add(y, x), (40, 50))
