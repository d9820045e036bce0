"""Augmentations that respect the physics of sky images.

Sky orientation is arbitrary, so flips and rotations by multiples of 90 degrees change
nothing a detector should care about; they are exact on pixels (no interpolation) and on
boxes. Colour is physics (a clump's colour tells its age), so there is no colour jitter.
"""
from __future__ import annotations

from typing import List

import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import NoOpTransform, Transform


class Rot90Transform(Transform):
    """Rotate an image by ``k`` x 90 degrees counter-clockwise (as ``np.rot90``)."""

    def __init__(self, k: int, height: int, width: int):
        super().__init__()
        self._set_attributes(locals())
        self.k = k % 4

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(img, self.k, axes=(0, 1)))

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """Pixel-edge coordinates (x, y) follow the image: one CCW quarter turn maps
        (x, y) in a W x H image to (y, W - x) in the H x W result."""
        coords = np.asarray(coords, dtype=np.float64).copy()
        h, w = self.height, self.width
        for _ in range(self.k):
            x, y = coords[:, 0].copy(), coords[:, 1].copy()
            coords[:, 0], coords[:, 1] = y, w - x
            h, w = w, h
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation)

    def inverse(self) -> Transform:
        h, w = (self.width, self.height) if self.k % 2 else (self.height, self.width)
        return Rot90Transform(-self.k, h, w)


class RandomRot90(T.Augmentation):
    """Rotate by k x 90 degrees with k uniform in {0, 1, 2, 3}."""

    def get_transform(self, image: np.ndarray) -> Transform:
        k = int(np.random.randint(4))
        if k == 0:
            return NoOpTransform()
        return Rot90Transform(k, image.shape[0], image.shape[1])


def build_clump_augmentations(cfg, is_train: bool) -> List[T.Augmentation]:
    """Resize (only if the config asks for a size other than native) + flips + rotations."""
    augs: List[T.Augmentation] = []
    min_size = cfg.INPUT.MIN_SIZE_TRAIN if is_train else cfg.INPUT.MIN_SIZE_TEST
    max_size = cfg.INPUT.MAX_SIZE_TRAIN if is_train else cfg.INPUT.MAX_SIZE_TEST
    # MIN_SIZE 0 means "native resolution": the paper's upsampling of 200 px crops to 800 px
    # multiplies compute by 16 for no new information.
    if min_size and (not isinstance(min_size, (list, tuple)) or any(min_size)):
        sample = cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING if is_train else "choice"
        augs.append(T.ResizeShortestEdge(min_size, max_size, sample))
    if is_train:
        if cfg.INPUT.CROP.ENABLED:
            augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        if cfg.INPUT.AUG.HFLIP:
            augs.append(T.RandomFlip(prob=0.5, horizontal=True, vertical=False))
        if cfg.INPUT.AUG.VFLIP:
            augs.append(T.RandomFlip(prob=0.5, horizontal=False, vertical=True))
        if cfg.INPUT.AUG.ROT90:
            augs.append(RandomRot90())
    return augs
