"""Dataset mapper: image file -> tensor, with the physics-respecting augmentations."""
from __future__ import annotations

import copy
import logging
from typing import Dict, List

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .transforms import build_clump_augmentations

logger = logging.getLogger(__name__)


class ClumpDatasetMapper(DatasetMapper):
    """Like Detectron2's ``DatasetMapper`` (boxes only), with clump augmentations.

    Images without clumps keep an empty ``instances`` (they are real negatives). Reading an
    image goes through :meth:`read_image`, the one place that knows image formats.
    """

    @configurable
    def __init__(self, is_train: bool, *, augmentations: List[T.Augmentation],
                 image_format: str, **kwargs):
        super().__init__(is_train, augmentations=augmentations, image_format=image_format,
                         use_instance_mask=False, use_keypoint=False,
                         recompute_boxes=False, **kwargs)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict:
        return {
            "is_train": is_train,
            "augmentations": build_clump_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
        }

    def read_image(self, dataset_dict: Dict) -> np.ndarray:
        """(H, W, C) array in ``image_format`` channel order."""
        return utils.read_image(dataset_dict["file_name"], format=self.image_format)

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
        annos = [
            utils.transform_instance_annotations(obj, transforms, image_shape)
            for obj in dataset_dict.pop("annotations", [])
            if obj.get("iscrowd", 0) == 0
        ]
        instances = utils.annotations_to_instances(annos, image_shape)
        dataset_dict["instances"] = utils.filter_empty_instances(instances)
        return dataset_dict
