"""Puts this folder on sys.path: its helper modules (eval_cases, eval_dist_worker) are
imported by name, also by the processes that the 2-process test spawns."""
import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
