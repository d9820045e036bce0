from .clump_evaluation import ClumpEvaluator
from .matching import MatchCounts, box_iou_xyxy, count_matches, match_boxes

__all__ = ["ClumpEvaluator", "MatchCounts", "box_iou_xyxy", "count_matches", "match_boxes"]
