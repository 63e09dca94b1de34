"""What napari loads for a reader, a writer or a sample must not pull in torch or timm: opening a
COCO json would otherwise take seconds (and, in napari, bring triton next to Mesa's GL)."""

from __future__ import annotations

import subprocess
import sys

import pytest

LIGHT = ["napari_icmformer", "napari_icmformer.export", "napari_icmformer.object_files",
         "napari_icmformer.image", "napari_icmformer._sample_data"]


@pytest.mark.parametrize("module", LIGHT)
def test_module_does_not_import_torch(module):
    code = (f"import sys, {module}\n"
            "heavy = sorted(m for m in ('torch', 'timm', 'torchvision', 'triton') if m in sys.modules)\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"


def test_reader_on_a_coco_json_stays_light(tmp_path):
    """The npe2 reader contribution resolved and called on a json, as napari does on drag-and-drop."""
    path = tmp_path / "objects.json"
    path.write_text('{"images": [{"id": 1, "width": 4, "height": 3, "file_name": "a.png"}], '
                    '"annotations": [], "categories": []}')
    code = ("import sys\n"
            "from napari_icmformer.export import get_coco_reader\n"
            f"reader = get_coco_reader({str(path)!r})\n"
            "assert reader is not None\n"
            f"layers = reader({str(path)!r})\n"
            "print(len(layers), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False", out.stdout


def test_every_public_name_resolves():
    """Each name in ``napari_icmformer.__all__`` (loaded lazily) is really there."""
    code = ("import napari_icmformer as m\n"
            "missing = [n for n in m.__all__ if not hasattr(m, n)]\n"
            "print(','.join(missing))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"napari_icmformer.__all__ names that do not resolve: {out.stdout.strip()}"
