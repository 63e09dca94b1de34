from pathlib import Path

import numpy as np
from npe2 import PluginManifest

from napari_icmformer import _sample_data

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_is_valid_and_named_after_the_distribution():
    manifest = PluginManifest.from_file(ROOT / "napari_icmformer" / "napari.yaml")
    assert manifest.name == "napari-icmformer"
    assert {s.key for s in manifest.contributions.sample_data} == {"coins", "astronaut"}


def test_sample_data_is_offline_images():
    (coins, meta, kind), = _sample_data.coins()
    assert kind == "image" and coins.ndim == 2 and meta["name"] == "coins"
    (astro, meta, _), = _sample_data.astronaut()
    assert astro.shape[-1] == 3 and meta["rgb"] is True and isinstance(astro, np.ndarray)
