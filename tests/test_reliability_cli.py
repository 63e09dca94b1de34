"""Issue 16.5 / 16.6 / 16.9 / 16.12 / 16.13 / 16.14 for icmformer-segment and icmformer-eval:
bad input is one line on stderr and exit code 2, nothing is predicted before the output is
known to be writable, and one bad sample does not cost an evaluation its results."""

import json

import numpy as np
import pytest
from PIL import Image

from napari_icmformer.cli.evaluate import main as eval_main
from napari_icmformer.cli.segment import SAMPLE_IMAGES, load_image, main
from napari_icmformer.engine import Predictor


def _one_error_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return err


@pytest.fixture
def no_predict(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("predicted before the inputs were checked")

    monkeypatch.setattr(Predictor, "predict", fail)


# -- icmformer-segment ---------------------------------------------------------------------
@pytest.mark.parametrize("clicks, match", [
    ({"clicks": [{"y": 5, "x": 5, "positive": "false"}]}, "true or false"),
    ({"clicks": [{"y": 5, "x": 5}, {"y": 9, "x": 9, "positive": "0"}]}, "true or false"),
    ([[5, 5, "0"]], "true or false"),
    ([[5, 5, 2]], "true or false"),
    ({"clicks": [{"y": 5}]}, '"y", "x"'),
    ({"clicks": [{"y": 5, "x": 5, "positve": False}]}, "keys"),  # a typo is not a positive click
    ([[5]], "click 0"),
    ([[5, 5, 1, 7]], "click 0"),
    ({"clicks": 5}, "list of clicks"),
    ({"points": []}, "keys"),
    ([{"y": "a", "x": 1}], "number"),
    ([[True, 5]], "number"),
    ("just a string", "list of clicks"),
])
def test_clicks_json_is_validated(tmp_path, tiny_checkpoint, capsys, no_predict, clicks, match):
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps(clicks))
    rc = main(["coins", "--clicks-json", str(path), "--click", "10,10", "--checkpoint", str(tiny_checkpoint),
               "--out", str(tmp_path / "out")])
    assert rc == 2
    assert match in _one_error_line(capsys, "icmformer-segment")


def test_negative_clicks_in_json_stay_negative(tmp_path, tiny_checkpoint, monkeypatch):
    seen = []
    real = Predictor.predict

    def spy(self, clicks, prev=None, **kw):
        seen.append([c.positive for c in clicks])
        return real(self, clicks, prev, **kw)

    monkeypatch.setattr(Predictor, "predict", spy)
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps({"clicks": [{"y": 50, "x": 60, "positive": True},
                                           {"y": 5, "x": 5, "positive": False}, [8, 8, 0], [9, 9, False]]}))
    assert main(["coins", "--clicks-json", str(path), "--checkpoint", str(tiny_checkpoint),
                 "--out", str(tmp_path / "out")]) == 0
    assert seen[-1] == [True, False, False, False]


@pytest.mark.parametrize("args, match", [
    (["--threshold", "2"], "--threshold"),
    (["--threshold", "0"], "--threshold"),
    (["--threshold", "nan"], "--threshold"),
    (["--click", "abc"], "--click"),
])
def test_segment_arguments_are_checked_while_parsing(capsys, args, match):
    with pytest.raises(SystemExit) as info:
        main(["coins", "--click", "5,5", *args])
    assert info.value.code == 2
    assert match in _one_error_line(capsys, "icmformer-segment")


@pytest.mark.parametrize("name", ["cells3d", "download_all", "brain", "lbp_frontal_face_cascade_filename",
                                  "data_dir", "binary_blobs"])
def test_only_bundled_sample_images_are_loaded(monkeypatch, capsys, tmp_path, name):
    import skimage.data  # noqa: PLC0415

    monkeypatch.setattr(skimage.data, name, lambda *a, **k: pytest.fail(f"skimage.data.{name} was called"),
                        raising=False)
    assert main([name, "--click", "1,1", "--out", str(tmp_path)]) == 2
    assert "not a scikit-image sample" in _one_error_line(capsys, "icmformer-segment")


def test_bundled_samples_load_without_the_network(monkeypatch):
    import socket  # noqa: PLC0415

    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: pytest.fail("a sample image used the network"))
    for name in SAMPLE_IMAGES:
        assert load_image(name).ndim in (2, 3), name


def test_a_folder_is_not_called_no_such_file(tmp_path, capsys):
    (tmp_path / "pics").mkdir()
    assert main([str(tmp_path / "pics"), "--click", "1,1", "--out", str(tmp_path)]) == 2
    err = _one_error_line(capsys, "icmformer-segment")
    assert "folder" in err and "no such file" not in err


def test_out_onto_a_file_fails_before_predicting(tmp_path, tiny_checkpoint, capsys, no_predict):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    rc = main(["coins", "--click", "50,60", "--checkpoint", str(tiny_checkpoint), "--out", str(target)])
    assert rc == 2
    assert "is a file" in _one_error_line(capsys, "icmformer-segment")
    assert target.read_text() == "not a folder"


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "coins_mask.png").write_bytes(b"earlier result")
    base = ["coins", "--click", "50,60", "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    with monkeypatch.context() as m:
        m.setattr(Predictor, "predict", lambda *a, **k: pytest.fail("predicted before checking --out"))
        assert main(base) == 2
    assert "already exists" in _one_error_line(capsys, "icmformer-segment")
    assert (out / "coins_mask.png").read_bytes() == b"earlier result"
    assert main([*base, "--overwrite"]) == 0
    assert np.asarray(Image.open(out / "coins_mask.png")).shape == (303, 384)
    assert not list(out.glob(".*.tmp"))


# -- icmformer-eval ------------------------------------------------------------------------
@pytest.mark.parametrize("args, match", [
    (["--max-clicks", "0"], "--max-clicks"),
    (["--limit", "-1"], "--limit"),
    (["--limit", "0"], "--limit"),
    (["--iou-thresholds", "1.5"], "--iou-thresholds"),
    (["--iou-thresholds", "0.85", "0"], "--iou-thresholds"),
    (["--seed", "-1"], "--seed"),
    (["--mois-view", "0"], "--mois-view"),
])
def test_eval_arguments_are_checked_while_parsing(capsys, args, match):
    with pytest.raises(SystemExit) as info:
        eval_main(["--datasets", "Nope", *args])
    assert info.value.code == 2
    assert match in _one_error_line(capsys, "icmformer-eval")


def _toy_dataset(root, n=3, broken=1):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:48, :48]
    for i in range(n):
        m = (yy - 24) ** 2 + (xx - 20 - i) ** 2 <= 100
        img = np.where(m[..., None], 200, 20).astype(np.uint8).repeat(3, -1)
        if i == broken:
            (root / "images" / f"s{i}.png").write_bytes(b"this is not a png")
        else:
            Image.fromarray(img).save(root / "images" / f"s{i}.png")
        Image.fromarray(m.astype(np.uint8) * 255).save(root / "masks" / f"s{i}.png")


def test_one_bad_sample_does_not_lose_the_others(tmp_path, capsys):
    root = tmp_path / "Toy"
    _toy_dataset(root)
    out = tmp_path / "res"
    rc = eval_main(["--datasets", str(root), "--method", "random-walker", "--max-clicks", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "s1.png" in err and "skipped" in err
    data = json.loads((out / "per_object.json").read_text())
    assert sorted(o["sample"] for o in data["objects"]) == ["s0", "s2"]
    assert [s["index"] for s in data["skipped"]] == [1] and "s1.png" in data["skipped"][0]["error"]
    assert data["summary"][0]["objects"] == 2
    assert "skipped" in (out / "table.md").read_text()


def test_eval_out_onto_a_file_fails_first(tmp_path, capsys):
    root = tmp_path / "Toy"
    _toy_dataset(root, broken=-1)
    (tmp_path / "res").write_text("keep me")
    assert eval_main(["--datasets", str(root), "--method", "random-walker", "--out", str(tmp_path / "res")]) == 2
    assert "is a file" in _one_error_line(capsys, "icmformer-eval")
    assert (tmp_path / "res").read_text() == "keep me"


def test_sois_ctrl_c_keeps_the_finished_objects(tmp_path, capsys, monkeypatch):
    from napari_icmformer.baselines import RandomWalkerMethod  # noqa: PLC0415

    root = tmp_path / "Toy"
    _toy_dataset(root, broken=-1)
    calls = {"n": 0}
    original = RandomWalkerMethod.set_image

    def set_image(self, image):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        original(self, image)

    monkeypatch.setattr(RandomWalkerMethod, "set_image", set_image)
    out = tmp_path / "res"
    rc = eval_main(["--datasets", str(root), "--method", "random-walker", "--max-clicks", "2", "--out", str(out)])
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    data = json.loads((out / "per_object.json").read_text())
    assert data["interrupted"] and sorted(o["sample"] for o in data["objects"]) == ["s0", "s1"]


# -- icmformer-eval --task mois (issue 16 a): one bad image never costs the finished ones -----
def _nuclei(root, n=3, broken=(), bad_label=()):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    yy, xx = np.mgrid[:64, :64]
    for i in range(n):
        lab = np.zeros((64, 64), np.uint16)
        for k, (cy, cx) in enumerate(((15, 15), (20, 45), (45, 30 + i)), start=1):
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= 49] = k
        img = np.where(lab[..., None] > 0, 200, 30).astype(np.uint8).repeat(3, -1)
        if i in broken:
            (root / "images" / f"n{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        else:
            Image.fromarray(img).save(root / "images" / f"n{i}.png")
        if i in bad_label:
            Image.fromarray(lab[:40]).save(root / "labels" / f"n{i}.png")  # not the image's size
        else:
            Image.fromarray(lab).save(root / "labels" / f"n{i}.png")


@pytest.fixture
def pp_checkpoint(tmp_path):
    from napari_icmformer.checkpoints import save_checkpoint  # noqa: PLC0415
    from tests.test_icmformer_pp import tiny_pp  # noqa: PLC0415

    return save_checkpoint(tmp_path / "pp.pt", tiny_pp())


def _mois_args(root, out, sois, pp, *extra):
    return ["--task", "mois", "--datasets", str(root), "--checkpoint", str(sois), "--mois-checkpoint", str(pp),
            "--max-clicks", "2", "--mois-view", "64", "--mois-mode", "additional", "--out", str(out),
            "--device", "cpu", *extra]


@pytest.mark.parametrize("extra", [[], ["--annotate-all"]])
def test_mois_skips_a_bad_image_and_keeps_the_others(tmp_path, capsys, tiny_checkpoint, pp_checkpoint, extra):
    root = tmp_path / "Nuclei"
    _nuclei(root, n=4, broken=(1,), bad_label=(2,))
    out = tmp_path / "res"
    rc = eval_main(_mois_args(root, out, tiny_checkpoint, pp_checkpoint, *extra))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("icmformer-eval:")]
    assert len(lines) == 3 and "n1.png" in lines[0] and "n2.png" in lines[1]  # one line each ...
    assert "2 sample(s)" in lines[2] and "per_target.json" in lines[2]  # ... and the summary
    data = json.loads((out / "per_target.json").read_text())
    assert [s["index"] for s in data["skipped"]] == [1, 2]
    assert {t["sample"] for t in data["targets"]} == {"n0", "n3"}
    rows = {r["method"]: r for r in data["summary"]}
    assert all(r["targets"] == 2 for r in rows.values())  # every method on the same two images
    if extra:
        assert rows["annotate-all one-by-one (icmformer)"]["objects"] == 6
    table = (out / "table.md").read_text()
    assert "Nuclei sample #1: cannot read image" in table and "n1.png" in table and "n2.png" in table


def test_mois_ctrl_c_writes_the_finished_images(tmp_path, capsys, tiny_checkpoint, pp_checkpoint, monkeypatch):
    import napari_icmformer.cli.evaluate_mois as em  # noqa: PLC0415

    root = tmp_path / "Nuclei"
    _nuclei(root, n=3)
    original, calls = em.evaluate_sois_reference, {"n": 0}

    def reference(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(em, "evaluate_sois_reference", reference)
    out = tmp_path / "res"
    rc = eval_main(_mois_args(root, out, tiny_checkpoint, pp_checkpoint))
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    data = json.loads((out / "per_target.json").read_text())
    assert data["interrupted"] and {t["sample"] for t in data["targets"]} == {"n0"}
