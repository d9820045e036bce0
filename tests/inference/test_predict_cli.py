"""tools/predict_catalog.py end to end with the tiny Faster R-CNN (random weights, fixed seed):
2 CPU processes (gloo) give the same catalogue as 1; a run killed (SIGKILL) after some shards
resumes to the same catalogue.

The command line runs in this process (the tool's ``main``, loaded by path) where a separate
process adds nothing but start-up time; the killed run is a real subprocess.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "predict_catalog.py"


def _argv(folder, output, weights, tiny_model_opts, extra=()):
    opts = tiny_model_opts(output.parent)
    return ["--config-file", str(REPO / "configs" / "quickstart.yaml"),
            "--input", str(folder), "--output", str(output), "--no-progress", *extra, *opts,
            "MODEL.WEIGHTS", str(weights), "TEST.CLUMP_EVAL.SCORE_THRESH", "0.0",
            "INFERENCE.SHARD_SIZE", "2", "INFERENCE.BATCH_SIZE", "2",
            # same threads per process in every run: CPU sums are thread-order dependent
            "INFERENCE.CPU_THREADS", "1"]


def _run(tool, argv):
    threads = torch.get_num_threads()
    try:
        tool.main(argv)
    finally:
        torch.set_num_threads(threads)


def _images(tiny_synthetic):
    return tiny_synthetic / "images"  # 12 train + 6 val galaxies, in train/ and val/


def test_two_processes_equal_one_and_kill_resume(tiny_synthetic, tiny_weights, tiny_model_opts,
                                                 tmp_path, load_tool):
    tool = load_tool("predict_catalog")
    folder = _images(tiny_synthetic)
    one = tmp_path / "one" / "clumps.parquet"
    _run(tool, _argv(folder, one, tiny_weights, tiny_model_opts))
    ref = pd.read_parquet(one)
    summary = json.loads((tmp_path / "one" / "clumps_summary.json").read_text())
    assert summary["galaxies"] == 18 and summary["shards"] == 9 and summary["processes"] == 1
    assert summary["unreadable"] == 0 and summary["clumps"] > 0  # random weights, threshold 0

    two = tmp_path / "two" / "clumps.parquet"
    _run(tool, _argv(folder, two, tiny_weights, tiny_model_opts, ["--num-workers", "2"]))
    summary2 = json.loads((tmp_path / "two" / "clumps_summary.json").read_text())
    assert summary2["processes"] == 2 and summary2["shards_run"] == 9
    pd.testing.assert_frame_equal(pd.read_parquet(two), ref)

    # SIGKILL after some shards: nothing half-written, and the re-run completes the rest
    killed = tmp_path / "killed" / "clumps.parquet"
    shards = killed.with_name("clumps.parquet.shards")
    proc = subprocess.Popen([sys.executable, str(TOOL), *_argv(folder, killed, tiny_weights,
                                                               tiny_model_opts)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("shard_*.parquet"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(list(shards.glob("shard_*.parquet")))
    assert 2 <= n_before and not killed.exists()
    _run(tool, _argv(folder, killed, tiny_weights, tiny_model_opts))
    resumed = json.loads((tmp_path / "killed" / "clumps_summary.json").read_text())
    assert resumed["shards_done_earlier"] == n_before
    assert resumed["shards_run"] == 9 - n_before
    pd.testing.assert_frame_equal(pd.read_parquet(killed), ref)
