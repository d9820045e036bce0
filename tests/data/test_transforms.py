"""Flips and 90-degree rotations are exact on pixels and boxes."""
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import transforms as T

from clump_d2.data.transforms import RandomRot90, Rot90Transform


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rot90_moves_box_with_the_pixels(k):
    h, w = 30, 40
    image = np.zeros((h, w, 3), dtype=np.uint8)
    x0, y0, x1, y1 = 5, 7, 12, 11  # a bright block occupying [x0, x1) x [y0, y1)
    image[y0:y1, x0:x1] = 255
    t = Rot90Transform(k, h, w)
    rotated = t.apply_image(image)
    box = t.apply_box(np.array([[x0, y0, x1, y1]], dtype=np.float64))[0]
    ys, xs = np.nonzero(rotated[..., 0])
    assert np.allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    assert rotated.shape[:2] == ((w, h) if k % 2 else (h, w))
    back = t.inverse().apply_image(rotated)
    assert np.array_equal(back, image)


def test_random_rot90_draws_all_four_turns():
    np.random.seed(0)
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    kinds = set()
    for _ in range(60):
        t = RandomRot90().get_transform(image)
        kinds.add(getattr(t, "k", 0))
    assert kinds == {0, 1, 2, 3}


def test_augmentation_list_has_no_colour_jitter():
    from clump_d2.data.transforms import build_clump_augmentations
    from clump_d2.engine import build_config

    cfg = build_config(str(Path(__file__).resolve().parents[2] / "configs" / "Base-ClumpRCNN-FPN.yaml"))
    augs = build_clump_augmentations(cfg, is_train=True)
    names = [type(a).__name__ for a in augs]
    assert names == ["RandomFlip", "RandomFlip", "RandomRot90"]
    assert build_clump_augmentations(cfg, is_train=False) == []
    assert not any(isinstance(a, (T.RandomBrightness, T.RandomContrast, T.RandomSaturation))
                   for a in augs)
