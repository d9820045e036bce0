"""A tiny two-class image folder: flat red vs flat blue galaxies with noise, 32 px."""
import numpy as np
import pytest
from PIL import Image

COLOURS = {"blue": (60, 90, 200), "red": (200, 80, 50)}


def write_folder(root, n_per_class=12, size=32, seed=0):
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            # A round "galaxy" of the class colour on a dark sky, with noise.
            yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
            profile = np.exp(-(xx ** 2 + yy ** 2) / (2 * (size / 6) ** 2))[..., None]
            img = profile * np.array(colour) + rng.normal(0, 8, (size, size, 3)) + 10
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                root / name / f"{name}{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("galaxies"))
