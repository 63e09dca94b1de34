import json

import numpy as np
from PIL import Image

from napari_icmformer.cli.segment import main


def test_segment_writes_mask_and_overlay(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    rc = main(["coins", "--click", "50,60", "--neg-click", "10,10", "--checkpoint", str(tiny_checkpoint),
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    mask = np.asarray(Image.open(out / "coins_mask.png"))
    overlay = np.asarray(Image.open(out / "coins_overlay.png"))
    assert mask.shape == (303, 384) and set(np.unique(mask)) <= {0, 255}
    assert overlay.shape == (303, 384, 3)


def test_segment_reads_image_files_and_click_json(tmp_path, tiny_checkpoint):
    img = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50)) * 65535).astype(np.uint16)).save(img)
    clicks = tmp_path / "clicks.json"
    clicks.write_text(json.dumps({"clicks": [{"y": 10, "x": 12, "positive": True}, [30, 30, 0]]}))
    assert main([str(img), "--clicks-json", str(clicks), "--checkpoint", str(tiny_checkpoint),
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "img_mask.png").exists()


def test_segment_errors_are_clear(tmp_path, tiny_checkpoint, capsys):
    assert main(["coins", "--click", "5000,1", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path)]) == 2
    assert "outside the image" in capsys.readouterr().err
    assert main(["no_such_image_anywhere", "--click", "1,1", "--out", str(tmp_path)]) == 2
    assert "not a scikit-image sample" in capsys.readouterr().err
    assert main(["coins", "--click", "1,1", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["coins", "--neg-click", "1,1", "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "at least one positive click" in capsys.readouterr().err
