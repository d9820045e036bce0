"""Completeness / purity evaluation of clump detections (evaluator, matching, metrics, plots,
batch jobs)."""
from .clump_evaluation import ClumpEvaluator, instances_to_prediction, truth_from_dicts
from .matching import (
    MatchCounts,
    MatchCriterion,
    box_centre_distance,
    box_iou_xyxy,
    count_matches,
    match_boxes,
)

__all__ = [
    "ClumpEvaluator",
    "MatchCounts",
    "MatchCriterion",
    "box_centre_distance",
    "box_iou_xyxy",
    "count_matches",
    "instances_to_prediction",
    "match_boxes",
    "truth_from_dicts",
]
