"""The README/researcher example runs as written, on the shipped default checkpoint."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_icmformer.weights import DEFAULTS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not DEFAULTS["sois"].is_file(), reason="no default checkpoint in this checkout")
def test_python_api_example_segments_a_coin(tmp_path):
    out = tmp_path / "coin.png"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "segment_with_python_api.py"), "--out", str(out)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    mask = np.asarray(Image.open(out)) > 0
    # the left-most coin of the top row spans about rows 33-75, columns 21-67 (~1,500 px)
    assert mask[54, 44]
    assert 700 < mask.sum() < 4000
    assert not mask[120:, :].any() and not mask[:, 130:].any()  # nothing far from the clicked coin
