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


# --- hostile images: one status row each, never the end of the run ---------------------------

def _hostile_folder(folder, good: int = 2):
    """``good`` readable 64 px PNGs, and beside them a 115-byte PNG declaring 12000 x 12000,
    a 1 x 1 PNG, a PNG whose pixel data stop after 20 of 64 rows, and a FITS cube whose WCS
    wcslib refuses (CDELT1 = 0: a singular matrix)."""
    from astropy.io import fits
    from image_helpers import write_png
    from PIL import Image

    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for k in range(good):
        Image.fromarray(rng.integers(0, 80, (64, 64, 3), dtype=np.uint8)).save(
            folder / f"good{k}.png")
    write_png(folder / "bomb.png", 12000, 12000, rows=1)
    write_png(folder / "dot.png", 1, 1)
    write_png(folder / "half.png", 64, 64, rows=20)
    header = fits.Header({"BAND1": "g", "BAND2": "r", "BAND3": "i", "CTYPE1": "RA---TAN",
                          "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": 5.0, "CRPIX1": 32.0,
                          "CRPIX2": 32.0, "CDELT1": 0.0, "CDELT2": 1e-4})
    fits.PrimaryHDU(rng.normal(0, 1, (3, 64, 64)).astype(np.float32), header=header).writeto(
        folder / "badwcs.fits")
    return folder


def test_hostile_images_are_per_galaxy_statuses_and_the_run_completes(
        tiny_weights, tiny_model_opts, tmp_path, load_tool):
    tool = load_tool("predict_catalog")
    folder = _hostile_folder(tmp_path / "in")
    out = tmp_path / "out" / "clumps.csv"
    _run(tool, _argv(folder, out, tiny_weights, tiny_model_opts))  # returns: no exit status
    galaxies = pd.read_csv(tmp_path / "out" / "clumps_galaxies.csv", keep_default_na=False)
    status = dict(zip(galaxies["galaxy_id"], galaxies["galaxy_status"]))
    assert sorted(status) == ["badwcs", "bomb", "dot", "good0", "good1", "half"]
    assert status["good0"] in ("ok", "no_clumps") and status["good1"] in ("ok", "no_clumps")
    assert status["bomb"].startswith("unreadable: ")
    assert (f"{folder / 'bomb.png'}: 12000 x 12000 = 144.0 Mpx > INPUT.MAX_PIXELS = 1048576"
            in status["bomb"])
    assert status["dot"].startswith("unreadable: ") and "1 x 1 px is smaller" in status["dot"]
    assert status["half"].startswith("unreadable: ")
    assert f"{folder / 'half.png'}: truncated PNG" in status["half"]
    # searched as usual, but no RA/Dec: the galaxy's status names the file and the WCS fault
    assert status["badwcs"].startswith(f"bad_sky: {folder / 'badwcs.fits'}: invalid WCS ")
    assert "singular" in status["badwcs"]
    row = galaxies.set_index("galaxy_id").loc["badwcs"]
    assert row["sky_source"] == "none" and int(row["image_width"]) == 64
    summary = json.loads((tmp_path / "out" / "clumps_summary.json").read_text())
    assert (summary["galaxies"], summary["unreadable"], summary["bad_sky"]) == (6, 3, 1)


def test_decompression_bomb_under_a_memory_cap(tiny_weights, tiny_model_opts, tmp_path):
    """The catalogue as a separate process under a 6 GiB address-space cap (RLIMIT_AS; torch
    alone reserves ~3.7 GiB of address space at import, so a 3-4 GiB cap cannot run it):
    exit 0, the catalogue written, the bomb one status row, peak memory that of the run.
    Before the pixel bound the bomb was decoded (432 MB) and the model's first allocation on
    it tried 1.7 GB: under this cap that run peaked at 2.6 GiB, without one at 46 GB (the
    kernel's OOM killer ended it, writing nothing)."""
    import resource

    folder = _hostile_folder(tmp_path / "in")
    for name in ("dot.png", "half.png", "badwcs.fits"):  # only the bomb and the good ones
        (folder / name).unlink()
    out = tmp_path / "out" / "clumps.parquet"
    cap = 6 * 2 ** 30

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    # one thread each, and few malloc arenas: address space stays predictable under the cap
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    proc = subprocess.Popen([sys.executable, str(TOOL), *_argv(folder, out, tiny_weights,
                                                               tiny_model_opts)],
                            cwd=REPO, env=env, preexec_fn=limit_memory,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, wait_status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the session's
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert os.waitstatus_to_exitcode(wait_status) == 0, stderr[-3000:]
    catalogue = pd.read_parquet(out)
    status = dict(zip(catalogue["galaxy_id"], catalogue["galaxy_status"]))
    assert sorted(status) == ["bomb", "good0", "good1"]
    assert "12000 x 12000 = 144.0 Mpx > INPUT.MAX_PIXELS" in status["bomb"]
    assert {status["good0"], status["good1"]} <= {"ok", "no_clumps"}
    peak_gib = usage.ru_maxrss / 2 ** 20  # ru_maxrss: KiB on Linux
    assert peak_gib < 2.0, f"peak RSS {peak_gib:.2f} GiB"
