import json

import numpy as np
import pytest
from PIL import Image

from napari_icmformer.cli.evaluate import main as eval_main
from napari_icmformer.evaluation import click_session, evaluate_object
from napari_icmformer.metrics import iou, noc, summarize


class Oracle:
    def __init__(self, gt):
        self.gt = gt

    def set_image(self, image):
        pass

    def reset_object(self):
        pass

    def predict(self, clicks, prev_mask=None):
        return self.gt.astype(np.float32)


class Empty(Oracle):
    def predict(self, clicks, prev_mask=None):
        return np.zeros(self.gt.shape, np.float32)


def _disk(shape=(60, 80), c=(30, 40), r=15):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r


def test_perfect_oracle_needs_one_click():
    gt = _disk()
    ious, clicks, _ = evaluate_object(Oracle(gt), gt, None)
    assert len(ious) == 20 and ious[0] == 1.0 and len(clicks) == 1  # no error left: no more clicks
    s = summarize([ious], [0.85, 0.9], 20)
    assert s["NoC@90"] == 1 and s["mIoU@1"] == 1.0 and s["NoF@90"] == 0


def test_empty_predictor_fails_everything():
    gt = _disk()
    ious, clicks, _ = evaluate_object(Empty(gt), gt, None)
    assert all(v == 0 for v in ious) and all(c.positive for c in clicks)
    s = summarize([ious, ious], [0.85, 0.9], 20)
    assert s["NoC@85"] == 20 and s["NoF@85"] == 2 and s["NoF@90"] == 2


def test_click_session_is_the_one_user_of_every_protocol():
    """The one click loop: first click on the interior point, then on the larger error; a
    start mask (MOIS recall) is scored before any click; no error left carries forward."""
    gt = _disk()
    seen = []

    def half_then_all(clicks):
        seen.append(clicks)
        return gt & (np.arange(80)[None] < 40) if len(clicks) == 1 else gt

    steps = list(click_session(half_then_all, gt, None, 4))
    assert [s.placed for s in steps] == [True, True, False, False]
    assert steps[0].iou == pytest.approx(0.5, abs=0.05) and [s.iou for s in steps[1:]] == [1.0] * 3
    assert (seen[0][0].y, seen[0][0].x) == (30, 40) and seen[1][1].x > 40 and seen[1][1].positive
    start = gt & (np.arange(80)[None] < 40)
    steps = list(click_session(lambda c: gt, gt, None, 2, start=start))
    assert steps[0].clicks[0].x > 40 and [s.iou for s in steps] == [1.0, 1.0]  # no "first" click
    aim = gt & (np.arange(80)[None] >= 50)
    first = next(click_session(lambda c: gt, gt, None, 1, first_on=aim)).clicks[0]
    assert aim[int(first.y), int(first.x)]
    with pytest.raises(ValueError, match="empty ground-truth"):
        list(click_session(lambda c: gt, np.zeros_like(gt), None, 3))


def test_ignore_band_is_excluded_from_iou():
    gt = _disk(r=10)
    band = _disk(r=12) & ~_disk(r=8)
    pred = _disk(r=12)  # wrong only inside the band
    assert iou(pred, gt) < 1
    assert iou(pred, gt, band) == 1.0
    assert noc([0.5, 0.86, 0.95], 0.9) == 3 and noc([0.1], 0.9, 20) == 20


def test_eval_cli_writes_table_json_csv_png(tmp_path, tiny_checkpoint):
    root = tmp_path / "data" / "Toy"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(2):
        img = np.zeros((64, 64, 3), np.uint8)
        m = _disk((64, 64), (30 + i, 32), 12)
        img[m] = 200
        Image.fromarray(img).save(root / "images" / f"s{i}.jpg")
        Image.fromarray(m.astype(np.uint8) * 255).save(root / "masks" / f"s{i}.png")
    out = tmp_path / "res"
    rc = eval_main(["--datasets", str(root), "--checkpoint", str(tiny_checkpoint), "--max-clicks", "3",
                    "--out", str(out), "--device", "cpu"])
    assert rc == 0
    for f in ("table.md", "summary.csv", "per_object.json", "miou_vs_clicks.png"):
        assert (out / f).exists()
    data = json.loads((out / "per_object.json").read_text())
    assert {r["method"] for r in data["summary"]} == {"icmformer-tiny", "random-walker"}
    assert all(len(o["ious"]) == 3 for o in data["objects"])
    rw = [r for r in data["summary"] if r["method"] == "random-walker"][0]
    assert rw["mIoU@3"] > 0.5  # the classical baseline segments a bright disk on black


def test_eval_cli_unknown_dataset_is_clear(tmp_path, capsys):
    assert eval_main(["--datasets", "Nope", "--data-root", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_mois_eval_cli_compares_with_sois_only(tmp_path, tiny_checkpoint):
    from napari_icmformer.checkpoints import save_checkpoint  # noqa: PLC0415
    from tests.test_icmformer_pp import tiny_pp  # noqa: PLC0415

    root = tmp_path / "data" / "Nuclei"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(2):
        lab = np.zeros((64, 64), np.uint16)
        for k, (cy, cx) in enumerate(((15, 15), (20, 45), (45, 30 + i)), start=1):
            lab[_disk((64, 64), (cy, cx), 7)] = k
        img = np.where(lab[..., None] > 0, 200, 30).astype(np.uint8).repeat(3, -1)
        Image.fromarray(img).save(root / "images" / f"n{i}.png")
        Image.fromarray(lab).save(root / "labels" / f"n{i}.png")
    pp = save_checkpoint(tmp_path / "pp.pt", tiny_pp())
    out = tmp_path / "mois"
    rc = eval_main(["--task", "mois", "--datasets", str(root), "--checkpoint", str(tiny_checkpoint),
                    "--mois-checkpoint", str(pp), "--max-clicks", "3", "--out", str(out), "--device", "cpu",
                    "--mois-view", "64", "--mois-update", "local", "global"])
    assert rc == 0
    data = json.loads((out / "per_target.json").read_text())
    methods = {r["method"] for r in data["summary"]}
    assert methods == {"sois-only"} | {f"icmformer++-pp@64 {u} ({m})" for u in ("local", "global")
                                       for m in ("additional", "collective")}
    assert all(r["targets"] == 2 for r in data["summary"])  # one target (3 nuclei) per image
    assert all(len(t["ious"]) == 4 for t in data["targets"])  # k = 0..3
    assert "NoC@90 vs SOIS-only" in (out / "table.md").read_text()
    assert (out / "miou_vs_clicks.png").exists()
