"""Dataset mapper: image file -> tensor, with the physics-respecting augmentations.

Image formats (:func:`read_image_file`, the one reader; the suffixes and the reader decision
are :mod:`clump_d2.data.image_io`'s):

* PNG/JPEG (anything PIL reads): :func:`clump_d2.data.image_io.read_display_image` in
  ``INPUT.FORMAT``: 8-bit images as Detectron2's ``read_image`` reads them, 16-bit grey ones
  scaled to the 8-bit range (``value * 255 / 65535``, float32), never clipped;
* FITS (``.fits``, ``.fit``, ``.fts``, ``.fits.gz``, per-band names with ``{band}``, or a
  record with ``band_files``): bands chosen and ordered by ``INPUT.FITS.BANDS``, NaN/inf
  filled and stretched by ``INPUT.FITS`` (see :mod:`clump_d2.data.fits_io`), float32 with
  ``len(INPUT.FITS.BANDS) == len(MODEL.PIXEL_MEAN)`` channels.

A record with ``crop: [x0, y0, w, h]`` (consensus tables in the 200 px centre crop of the
400 px PNGs) is cut to that crop after reading, before augmentation.
"""
from __future__ import annotations

import copy
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..structures import IGNORE_FIELD, below_limits, parse_attribute_limits
from .fits_io import FitsReadOptions, read_fits_for_network
from .image_io import read_display_image, reads_as_fits
from .transforms import build_clump_augmentations

logger = logging.getLogger(__name__)


class ClumpDatasetMapper(DatasetMapper):
    """Like Detectron2's ``DatasetMapper`` (boxes only), with clump augmentations.

    Images without clumps keep an empty ``instances`` (they are real negatives). Reading an
    image goes through :meth:`read_image`, the one place that knows image formats.
    """

    @configurable
    def __init__(self, is_train: bool, *, augmentations: List[T.Augmentation],
                 image_format: str, fits_options: Optional[FitsReadOptions] = None,
                 keep_ignore: bool = False, ignore_below: Optional[Dict[str, float]] = None,
                 **kwargs):
        """``fits_options`` (default: ``FitsReadOptions()``) say how FITS files are read;
        ``keep_ignore``: training keeps ``iscrowd`` annotations as instances with
        ``gt_ignore = True`` (ignore regions, for the ignore-aware heads) instead of dropping
        them. ``ignore_below`` ({attribute: limit}, ``MODEL.IGNORE_REGIONS.BELOW``): training
        clumps with a value below the limit are ignore regions too (training the bright end:
        fainter clumps are neither rewarded nor punished); needs ``keep_ignore``."""
        self.fits_options = fits_options or FitsReadOptions()
        self.keep_ignore = bool(keep_ignore)
        self.ignore_below = dict(ignore_below or {})
        if self.ignore_below and not self.keep_ignore:
            raise ValueError(
                "MODEL.IGNORE_REGIONS.BELOW needs the ignore-aware heads "
                "(MODEL.PROPOSAL_GENERATOR.NAME 'IgnoreRegionRPN', MODEL.ROI_HEADS.NAME "
                "'IgnoreRegionROIHeads'): a standard head would learn the faint clumps as "
                "background")
        super().__init__(is_train, augmentations=augmentations, image_format=image_format,
                         use_instance_mask=False, use_keypoint=False,
                         recompute_boxes=False, **kwargs)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict:
        return {
            "is_train": is_train,
            "augmentations": build_clump_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "fits_options": FitsReadOptions.from_config(cfg),
            # Only ignore-aware heads (modeling/ignore_regions.py) can use iscrowd regions: a
            # standard head would learn them as clumps, so they are dropped for it.
            "keep_ignore": (cfg.MODEL.PROPOSAL_GENERATOR.NAME == "IgnoreRegionRPN"
                            or cfg.MODEL.ROI_HEADS.NAME == "IgnoreRegionROIHeads"),
            "ignore_below": parse_attribute_limits(cfg.MODEL.IGNORE_REGIONS.BELOW),
        }

    def read_image(self, dataset_dict: Dict) -> np.ndarray:
        """(H, W, C) array: PNG/JPEG in ``image_format`` channel order, FITS as float32 bands
        in ``INPUT.FITS.BANDS`` order; cut to the record's ``crop`` if it has one."""
        return read_image_file(dataset_dict["file_name"], image_format=self.image_format,
                               fits_options=self.fits_options,
                               band_files=dataset_dict.get("band_files"),
                               crop=dataset_dict.get("crop"))

    def __call__(self, dataset_dict: Dict) -> Dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        try:
            image = self.read_image(dataset_dict)
        except Exception as e:  # re-raised with the file named; the cause stays chained
            raise RuntimeError(f"cannot read image {dataset_dict['file_name']}: {e}") from e
        utils.check_image_size(dataset_dict, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        annos = []
        for obj in dataset_dict.pop("annotations", []):
            if self.ignore_below and below_limits(obj, self.ignore_below):
                obj = {**obj, "iscrowd": 1}
            if self.keep_ignore or obj.get("iscrowd", 0) == 0:
                annos.append(utils.transform_instance_annotations(obj, transforms, image_shape))
        instances = utils.annotations_to_instances(annos, image_shape)
        if self.keep_ignore:
            instances.set(IGNORE_FIELD, torch.as_tensor(
                [bool(a.get("iscrowd", 0)) for a in annos], dtype=torch.bool))
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
        return dataset_dict


def read_image_file(file_name: str, *, image_format: str = "RGB",
                    fits_options: Optional[FitsReadOptions] = None,
                    band_files: Optional[Dict[str, str]] = None,
                    crop: Optional[Sequence[float]] = None) -> np.ndarray:
    """An image file as the network reads it: (H, W, C), cut to ``crop`` [x0, y0, w, h].

    FITS (:func:`clump_d2.data.image_io.reads_as_fits`): float32 bands of ``fits_options``
    (default ``FitsReadOptions()``); otherwise :func:`~clump_d2.data.image_io.
    read_display_image` in ``image_format`` channel order (uint8, or float32 in 0..255 for a
    16-bit grey image). Both refuse an image over ``fits_options.max_pixels``
    (``INPUT.MAX_PIXELS``) before decoding it.
    """
    file_name = str(file_name)
    if reads_as_fits(file_name, band_files):
        image = read_fits_for_network(file_name, fits_options or FitsReadOptions(),
                                      band_files=band_files)
    else:
        image = read_display_image(file_name, image_format,
                                   (fits_options or FitsReadOptions()).max_pixels)
    if crop:
        image = crop_image(image, crop, file_name)
    return image


def crop_image(image: np.ndarray, crop: Sequence[float], file_name: str = "image") -> np.ndarray:
    """``image[y0:y0+h, x0:x0+w]`` for ``crop = [x0, y0, w, h]`` (integers expected)."""
    x0, y0, w, h = (int(round(float(v))) for v in crop)
    height, width = image.shape[:2]
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(f"{file_name}: crop [{x0}, {y0}, {w}, {h}] does not fit in the "
                         f"{width}x{height} image")
    return image[y0:y0 + h, x0:x0 + w]
