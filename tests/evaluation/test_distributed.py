"""Two processes (gloo on the CPU) give the same numbers as one: the evaluator gathers
predictions, the validation loss all-gathers its sums."""
import json
import math
import pickle

import numpy as np
import pytest

from clump_d2.inference.launch import launch_cpu

import eval_dist_worker as dist_worker  # on sys.path via conftest.py, also for the children
from eval_cases import random_case


def _case():
    dicts, preds = random_case(np.random.default_rng(11), n_images=15)
    # Ignore regions gather alike: every third image's first clump is iscrowd, and clumps
    # below flux_frac 0.1 are ignored by the rule.
    for d in dicts[::3]:
        if d["annotations"]:
            d["annotations"][0]["iscrowd"] = 1
    return {"name": "dist_case", "dicts": dicts, "preds": preds, "n_loss_images": 9,
            "ignore_below": {"flux_frac": 0.1}}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _same(a[k], b[k])
        else:
            assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k],
                                                                                     rel=1e-12), k


def test_two_processes_equal_one(tmp_path):
    case = _case()
    one_results, one_losses = dist_worker.run_case(case, rank=0, world_size=1,
                                                   output_dir=str(tmp_path / "one"))
    case_file = tmp_path / "case.pkl"
    case_file.write_bytes(pickle.dumps(case))
    launch_cpu(dist_worker.worker, num_processes=2,
               args=(str(case_file), str(tmp_path / "rank"), str(tmp_path / "two")))
    (r0, l0), (r1, l1) = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes())
                          for r in (0, 1)]
    assert r1 == {}  # results live on the main process only
    assert one_results["clumps"]["n_true"] > 0 and one_results["clumps"]["n_detections"] > 0
    assert one_results["clumps"]["n_ignored"] > 0
    assert one_results["clumps"]["n_detections_on_ignored"] > 0
    _same(one_results, r0)
    # the validation loss is the mean over all 9 images on every process
    assert set(one_losses) == {"loss", "loss_cls", "loss_box_reg"}
    _same(one_losses, l0)
    _same(one_losses, l1)
    expected_box = np.mean([(i / 3) ** 2 for i in range(9)])
    assert one_losses["loss_box_reg"] == pytest.approx(expected_box)
    # the written metrics (binned counts included) agree too
    a = json.loads((tmp_path / "one" / "clump_metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "clump_metrics.json").read_text())
    assert a == b
