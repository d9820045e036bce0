"""tools/benchmark.py in quick mode (no speed is asserted) and the FLOP counting it uses."""
import json
import math
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def test_fvcore_flops_match_hand_count_for_tiny_conv_net():
    from fvcore.nn import FlopCountAnalysis

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, kernel_size=3, padding=1, bias=False),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 2, kernel_size=1, bias=False),
    )
    x = torch.zeros(1, 3, 10, 12)
    counter = FlopCountAnalysis(net, x)
    counter.unsupported_ops_warnings(False)
    # multiply-adds: conv1 = out pixels x out ch x (in ch x 3 x 3); conv2 = pixels x 2 x 4
    hand = 10 * 12 * 4 * (3 * 3 * 3) + 10 * 12 * 2 * 4
    assert counter.total() == hand


def test_quick_benchmark_writes_every_field(tmp_path, load_tool):
    tool = load_tool("benchmark")
    out = tmp_path / "bench"
    result = tool.main(["--config-file", str(REPO / "configs" / "quickstart.yaml"), "--quick",
                        "--vs-paper-pipeline", "--paper-min-size", "128", "--output", str(out),
                        "MODEL.DEVICE", "cpu"])
    saved = json.loads((out / "benchmark.json").read_text())
    assert saved["options"]["num_images"] == 2
    for name in ("clump_d2", "paper"):
        figures = saved[name]
        for key in ("inference_galaxies_per_s", "train_images_per_s", "gflops_per_image",
                    "fraction_of_sgemm_peak_inference"):
            assert math.isfinite(figures[key]) and figures[key] > 0, (name, key)
        assert len(figures["inference_samples"]) == 1 and len(figures["train_samples"]) == 1
        assert figures["peak_memory_mb_inference"] is not None
    # the paper pipeline (ResNet50 at 128 px) costs more than the R18 quickstart at 200 px
    assert saved["paper"]["gflops_per_image"] > saved["clump_d2"]["gflops_per_image"]
    ratio = saved["ratio_ours_over_paper"]
    assert math.isclose(ratio["gflops_per_image"], saved["clump_d2"]["gflops_per_image"]
                        / saved["paper"]["gflops_per_image"])
    table = (out / "benchmark.md").read_text()
    assert "inference galaxies/s" in table and "ours / paper" in table
    assert result["sgemm_gflops_per_s"] > 0


def test_catalogue_scaling_runs_predict_catalog_per_count(tmp_path, load_tool):
    """Each count runs the catalogue tool with photometry off and on (same run); the table
    file names the command and the on/off ratio."""
    import pandas as pd

    tool = load_tool("benchmark")
    out = tmp_path / "bench"
    table = tmp_path / "docs" / "scaling.md"
    result = tool.main(["--config-file", str(REPO / "configs" / "quickstart.yaml"),
                        "--skip-speed", "--catalogue-scaling", "3", "7", "--pool-size", "2",
                        "--output", str(out), "--table", str(table), "MODEL.DEVICE", "cpu",
                        "DATASETS.SYNTHETIC.IMAGE_SIZE", "64", "INFERENCE.SHARD_SIZE", "4",
                        "TEST.CLUMP_EVAL.SCORE_THRESH", "0.0", "TEST.DETECTIONS_PER_IMAGE", "2",
                        "OUTPUT_DIR", str(tmp_path / "run")])
    rows = json.loads((out / "benchmark.json").read_text())["catalogue_scaling"]
    assert rows == result["catalogue_scaling"]
    assert [r["galaxies"] for r in rows] == [3, 3, 7, 7]
    assert [r["photometry"] for r in rows] == ["off", "on", "off", "on"]
    assert [r["catalogued"] for r in rows] == [3, 3, 7, 7]  # every galaxy in the catalogue
    assert [r["shards"] for r in rows] == [1, 1, 2, 2]
    for r in rows:
        assert r["inference_galaxies_per_s"] > 0 and r["command_seconds"] > 0
        assert math.isclose(r["command_galaxies_per_s"], r["galaxies"] / r["command_seconds"],
                            rel_tol=0.01)
        assert r["clumps"] > 0  # threshold 0: the random model's top 2 boxes per galaxy
        # photometry off measures nothing; on measures every clump
        assert r["clumps_measured"] == (r["clumps"] if r["photometry"] == "on" else 0)
    # 2 distinct images, cycled: 7 galaxies with unique ids reading 2 files
    galaxies = pd.read_parquet(out / "scaling" / "clumps_7_photometry_on_galaxies.parquet")
    assert galaxies["galaxy_id"].nunique() == 7 and galaxies["file_name"].nunique() == 2
    on = pd.read_parquet(out / "scaling" / "clumps_7_photometry_on.parquet")
    off = pd.read_parquet(out / "scaling" / "clumps_7_photometry_off.parquet")
    assert "flux_ratio_B" in on and "flux_ratio_B" not in off
    pd.testing.assert_frame_equal(on[["galaxy_id", "x", "y", "score"]],
                                  off[["galaxy_id", "x", "y", "score"]])  # same detections
    text = table.read_text()
    assert "| 7 | on |" in text and "| 7 | off |" in text and "on / off" in text
    assert "python tools/benchmark.py" in text and "--catalogue-scaling 3 7" in text
    ratios = json.loads(table.with_suffix(".json").read_text())["photometry_ratios"]
    assert [r["galaxies"] for r in ratios] == [3, 7]
    assert all(r["inference_on_over_off"] > 0 for r in ratios)
    assert "| 7 | on |" in (out / "benchmark.md").read_text()


def test_benchmark_inputs_follow_the_config_resize():
    """A config that upsamples (configs/Speed/quickstart_800px.yaml) is benchmarked at the
    size its data loader feeds the model, boxes scaled with the image."""
    import numpy as np

    from clump_d2.studies.benchmark import BenchmarkOptions, Detectron2Pipeline, make_galaxies
    from clump_d2.engine import build_config

    galaxies = [g for g in make_galaxies(BenchmarkOptions(num_images=6)) if len(g["boxes"])][:1]
    for config, side in (("quickstart.yaml", 200), ("Speed/quickstart_800px.yaml", 800)):
        cfg = build_config(str(REPO / "configs" / config), ["MODEL.DEVICE", "cpu"])
        pipe = Detectron2Pipeline(cfg)
        for with_targets in (False, True):
            item = pipe._inputs(galaxies, with_targets=with_targets)[0]
            assert tuple(item["image"].shape) == (3, side, side)
            assert (item["height"], item["width"]) == (200, 200)
        boxes = item["instances"].gt_boxes.tensor.numpy()
        assert np.allclose(boxes, galaxies[0]["boxes"] * side / 200, atol=1e-3)


def test_user_path_runs_the_catalogue_beside_the_paper(tmp_path, load_tool, tiny_synthetic,
                                                      tiny_model_opts, initial_weights):
    """--user-path: the catalogue with photometry off and on and the paper's pipeline, on the
    same files, alternately; the ratio is the medians' ratio and the catalogue did its job."""
    import shutil

    images = tmp_path / "cutouts"
    images.mkdir()
    for f in sorted((tiny_synthetic / "images" / "val").glob("*.png"))[:3]:
        shutil.copy(f, images / f.name)
    (images / "README.md").write_text("not an image")  # ignored: only image files are timed
    opts = tiny_model_opts(tmp_path / "model")
    weights = initial_weights(str(REPO / "configs" / "quickstart.yaml"), opts,
                              tmp_path / "w.pth")
    tool = load_tool("benchmark")
    table = tmp_path / "docs" / "user_path.md"
    result = tool.main(["--config-file", str(REPO / "configs" / "quickstart.yaml"),
                        "--user-path", str(images), "--runs", "1", "--batch-size", "2",
                        "--paper-min-size", "96", "--output", str(tmp_path / "bench"),
                        "--table", str(table), *opts, "MODEL.WEIGHTS", weights,
                        "INFERENCE.CENTRE_CROP", "64", "TEST.CLUMP_EVAL.SCORE_THRESH", "0.0"])
    assert result["galaxies"] == 3 and result["config"]["centre_crop"] == 64
    for name in ("photometry off", "photometry on", "paper"):
        assert len(result["samples"][name]) == 1 and all(v > 0 for v in result["samples"][name])
    for name in ("photometry off", "photometry on"):
        assert result["ours_over_paper"][name] == \
            result["galaxies_per_s"][name] / result["galaxies_per_s"]["paper"]
        assert result["catalogue"][name]["galaxies"] == 3
        assert result["catalogue"][name]["unreadable"] == 0
    text = table.read_text()
    assert "python tools/benchmark.py" in text and "centre crop 64" in text
    assert json.loads(table.with_suffix(".json").read_text())["galaxies"] == 3
