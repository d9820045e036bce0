"""Non-learning clump finders, run through the same evaluator as the networks."""
from .classical import ClassicalClumpFinder, ClassicalParams, find_clumps

__all__ = ["ClassicalClumpFinder", "ClassicalParams", "find_clumps"]
