"""Adapt to my images (adapt.py, adapt_data.py, icmformer-adapt) on tiny models and tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from napari_icmformer.adapt import (
    MOIS_FILE,
    REPORT_FILE,
    SOIS_FILE,
    AdaptCancelled,
    AdaptConfig,
    _fine_tune,
    adapt,
    paired_gain,
)
from napari_icmformer.adapt_data import AdaptInputError, as_annotated, crop_to_objects, split_objects
from napari_icmformer.checkpoints import load_model, save_checkpoint
from napari_icmformer.engine import Predictor
from napari_icmformer.exemplar import ExemplarPredictor
from tests.conftest import tiny_model
from tests.test_icmformer_pp import tiny_pp


def blobs(seed: int, n: int = 8, size: int = 128):
    """A dark noisy image with ``n`` bright discs and its instance labels."""
    rng = np.random.default_rng(seed)
    image = (rng.random((size, size)) * 50).astype(np.uint8)
    labels = np.zeros((size, size), np.int32)
    yy, xx = np.indices((size, size))
    k = 0
    while k < n:
        cy, cx = rng.integers(10, size - 10, 2)
        r = rng.integers(5, 9)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if labels[disc].any():
            continue
        k += 1
        labels[disc] = k
        image[disc] = 200
    return image, labels


@pytest.fixture
def items():
    return [as_annotated(f"im{s}", *blobs(s)) for s in range(2)]


@pytest.fixture
def tiny_config(tmp_path):
    sois = save_checkpoint(tmp_path / "tiny.pt", tiny_model())
    mois = save_checkpoint(tmp_path / "tiny_pp.pt", tiny_pp())
    return AdaptConfig(minutes=0.08, sois_checkpoint=str(sois), mois_checkpoint=str(mois), batch_size=2,
                       mois_batch_size=1, score_clicks=3, exemplars=1, scores=2)


def test_split_holds_out_whole_objects_at_one_end_of_each_image(items):
    split = split_objects(items, 0.25)
    assert len(split.train) == len(split.held_out) == 2
    assert split.n_held_out >= 2 and split.n_train >= 6
    for train, held, whole, item in zip(split.train, split.held_out, split.whole, items, strict=True):
        crop = crop_to_objects(item)
        # the two parts tile the annotated crop along one axis: no pixel is in both
        axis = 0 if held.image.shape[1] == train.image.shape[1] == crop.image.shape[1] else 1
        assert train.image.shape[axis] + held.image.shape[axis] == crop.image.shape[axis]
        tail = crop.labels[-held.labels.shape[0]:] if axis == 0 else crop.labels[:, -held.labels.shape[1]:]
        for k in whole:  # wholly inside the held-out part: none of it is in the training part
            original = int(tail[held.labels == k][0])
            assert (held.labels == k).sum() == (crop.labels == original).sum() > 0


def test_too_few_objects_says_how_many_are_needed():
    few = [as_annotated("a", *blobs(0, n=5))]
    with pytest.raises(AdaptInputError, match=r"at least 8 committed objects .*found 5: commit 3 more"):
        split_objects(few)


def test_bad_labels_are_refused():
    image, labels = blobs(0)
    with pytest.raises(AdaptInputError, match="same size"):
        as_annotated("a", image, labels[:-1])
    with pytest.raises(AdaptInputError, match="integer"):
        as_annotated("a", image, labels.astype(float))


def test_adapt_tiny_models_writes_checkpoints_that_load_everywhere(items, tiny_config, tmp_path):
    seen = []
    result = adapt(items, tiny_config, on_progress=seen.append)
    report = result.report
    assert report["objects"]["held_out"] >= 2 and report["objects"]["train"] >= 6
    for task in ("sois", "mois"):
        part = report[task]
        assert part["steps"] >= 1 and 0 <= part["best_step"] <= part["steps"]
        assert part["improved"] == (part["best_step"] > 0)
        assert [h["step"] for h in part["history"]][0] == 0
    assert set(report["sois"]["after"]) >= {"NoC@85", "mIoU@3"} and set(report["mois"]["after"]) >= {"F1"}
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and seen[-1].phase == "done"
    # the kept weights are the best-scoring ones: the start's exactly when no step beat it
    start = load_model(tiny_config.sois_checkpoint).state_dict()
    same = all(torch.equal(v, result.sois_model.state_dict()[k]) for k, v in start.items())
    assert same == (not report["sois"]["improved"])

    paths = result.save(tmp_path / "out")
    assert {p.name for p in paths.values()} == {SOIS_FILE, MOIS_FILE, REPORT_FILE}
    assert not list((tmp_path / "out").glob("*.tmp")) and not list((tmp_path / "out").glob(".*"))
    Predictor.from_checkpoint(paths["sois"])
    ExemplarPredictor.from_checkpoint(paths["mois"])
    extra = load_model(paths["sois"]).checkpoint_extra["adaptation"]
    assert extra["before"] == report["sois"]["before"]
    saved = json.loads(paths["report"].read_text())
    assert saved["sois"]["after"] == report["sois"]["after"]
    with pytest.raises(FileExistsError, match="already holds"):
        result.save(tmp_path / "out")


def test_cancel_stops_and_keeps_nothing(items, tiny_config):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(AdaptCancelled):
        adapt(items, tiny_config, should_stop=stop)


def test_one_object_per_image_adapts_icmformer_only(tiny_config):
    singles = []
    for s in range(10):
        image, labels = blobs(s, n=1)
        singles.append(as_annotated(f"s{s}", image, labels))
    result = adapt(singles, tiny_config)
    assert "skipped" in result.report["mois"] and result.mois_model is None
    assert result.report["objects"]["held_out"] >= 2


# -- icmformer-adapt ------------------------------------------------------------------------------
def _write_pair(folder, seed, n=8):
    image, labels = blobs(seed, n)
    ipath, lpath = folder / f"im{seed}.png", folder / f"im{seed}_objects.png"
    Image.fromarray(image).save(ipath)
    Image.fromarray(labels.astype(np.uint16)).save(lpath)
    return ipath, lpath


def _run(argv, capsys):
    from napari_icmformer.cli.adapt import main  # noqa: PLC0415

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors (OneLineParser): one line, exit 2
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", ["no-labels", "count", "missing", "minutes", "few", "both", "size"])
def test_cli_bad_input_is_one_line_exit_2(case, tmp_path, capsys):
    i0, l0 = _write_pair(tmp_path, 0)
    i1, l1 = _write_pair(tmp_path, 1, n=3)
    out = tmp_path / "out"
    argv = {
        "no-labels": ["--images", i0, "--out", out],
        "count": ["--images", i0, i1, "--labels", l0, "--out", out],
        "missing": ["--images", tmp_path / "nope.png", "--labels", l0, "--out", out],
        "minutes": ["--images", i0, "--labels", l0, "--minutes", "0", "--out", out],
        "few": ["--images", i1, "--labels", l1, "--out", out],
        "both": ["--images", i0, "--labels", l0, "--coco", tmp_path / "x.json", "--out", out],
        "size": ["--images", i0, "--labels", l0, "--out", out],
    }[case]
    if case == "size":
        Image.fromarray(np.zeros((10, 10), np.uint16)).save(l0)
    code, err = _run(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("icmformer-adapt: error:")
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_cli_adapts_from_coco_and_refuses_to_overwrite(tmp_path, capsys, tiny_config):
    from napari_icmformer.object_files import write_objects  # noqa: PLC0415

    jsons = []
    for s in range(2):
        ipath, _ = _write_pair(tmp_path, s)
        jsons.append(write_objects(tmp_path / f"im{s}_objects.json", blobs(s)[1], ipath.name))
    out = tmp_path / "adapted"
    argv = ["--coco", *jsons, "--minutes", "0.08", "--out", out, "--checkpoint", tiny_config.sois_checkpoint,
            "--mois-checkpoint", tiny_config.mois_checkpoint]
    code, err = _run(argv, capsys)
    assert code == 0, err
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["objects"]["train"] + report["objects"]["held_out"] <= 16
    load_model(out / SOIS_FILE)
    before = (out / SOIS_FILE).read_bytes()
    code, err = _run(argv, capsys)
    assert code == 2 and "--overwrite" in err
    assert (out / SOIS_FILE).read_bytes() == before


def test_adaptation_views_are_the_engines_zoom_in_scale():
    """min_side=200 trains small objects in crops of >= 200 px x 0.75, as the engine's zoom-in
    sees them; the default (24 px) and its random stream are unchanged for the long runs."""
    from napari_icmformer.training.dataset import random_view  # noqa: PLC0415

    box = (300, 300, 312, 312)  # a 12 px nucleus in a 1000 px image
    for seed in range(20):
        a = random_view((1000, 1000), box, np.random.default_rng(seed), whole_prob=0.0, min_side=200)
        b = random_view((1000, 1000), box, np.random.default_rng(seed), whole_prob=0.0)
        assert min(a[2] - a[0], a[3] - a[1]) >= 149
        assert max(b[2] - b[0], b[3] - b[1]) <= 3 * 12 * 1.4 + 1


class _StubTrainer:
    """A trainer whose every step changes its one weight (so kept weights show which step won)."""

    def __init__(self) -> None:
        self.model = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.zeros_(self.model.weight)
        self.step = 0
        self.cfg = type("Cfg", (), {"iterations": 1})()

    def train_step(self) -> float:
        self.step += 1
        with torch.no_grad():
            self.model.weight.fill_(float(self.step))
        return 0.5


@pytest.mark.parametrize(("min_gain", "kept_start"), [(0.0, False), (0.05, True)])
def test_a_held_out_gain_below_the_margin_keeps_the_starting_weights(min_gain, kept_start):
    f1 = iter([0.50, 0.52, 0.53])  # before, then two scorings: +0.03 at best
    ticks = iter(range(10_000))
    result = _fine_tune(_StubTrainer(), lambda m: {"F1": next(f1)}, lambda s: (-s["F1"],), 20.0,
                        AdaptConfig(scores=2), lambda step, msg: None, clock=lambda: float(next(ticks)),
                        min_gain=min_gain)
    assert result["improved"] is (not kept_start)
    assert result["after"]["F1"] == (0.50 if kept_start else 0.53)
    with pytest.raises(ValueError, match="mois_min_gain"):
        AdaptConfig(mois_min_gain=-1)


@pytest.mark.parametrize(("after_each", "kept_start"), [
    ([4, 5, 5, 5, 3, 4], True),   # mean gain 0.33 click, all from one object, the rest worse: noise
    ([3, 4, 4, 6, 2, 3], False),  # a click saved on most objects: a clear gain
])
def test_paired_selection_keeps_the_start_unless_the_gain_beats_its_standard_error(after_each, kept_start):
    before_each = [3, 4, 5, 11, 2, 3]
    scores = iter([{"NoC": float(np.mean(before_each)), "each": before_each},
                   {"NoC": float(np.mean(after_each)), "each": after_each}])
    ticks = iter(range(10_000))
    result = _fine_tune(_StubTrainer(), lambda m: next(scores), lambda s: (s["NoC"],), 20.0,
                        AdaptConfig(scores=1, selection="paired"), lambda step, msg: None,
                        clock=lambda: float(next(ticks)))
    assert result["improved"] is (not kept_start)
    gain, se = paired_gain(before_each, after_each)
    assert (gain > se) is (not kept_start)
    assert paired_gain([1.0], [0.0])[1] == float("inf")
    with pytest.raises(ValueError, match="selection"):
        AdaptConfig(selection="best")
