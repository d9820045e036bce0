"""The transfer study: nested deterministic host subsets, one table row per (backbone, size),
threshold from the validation hosts, resumption without retraining."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from clump_d2.data.datasets import register_clump_dataset
from clump_d2.sim.real_hosts import RealHostParams, make_real_host_dataset
from clump_d2.studies.transfer import (
    TransferSpec,
    f1_best_threshold,
    host_subsets,
    limited_dataset,
    run_study,
)

REPO = Path(__file__).resolve().parents[2]
SIZE = 96


@pytest.fixture(scope="module")
def tiny_hosts(tmp_path_factory, write_host_jpegs):
    """A tiny real-host dataset: 10 rendered host galaxies (6 train, 2 val, 2 test hosts, two
    injected versions each), registered as ``tinyhosts_{train,val,test}``."""
    hosts = write_host_jpegs(tmp_path_factory.mktemp("hosts"), 10, seed=5, first_id=2000,
                             size=SIZE)
    out = tmp_path_factory.mktemp("tinyhosts")
    paths = make_real_host_dataset(
        hosts, out, {"train": 0.6, "val": 0.2, "test": 0.2},
        RealHostParams(crop_size=80, versions_per_host=2, empty_fraction=0.0,
                       clump_count_probs=(0.0, 0.5, 0.5), seed=2), show_progress=False)
    for split, path in paths.items():
        register_clump_dataset(f"tinyhosts_{split}", path, out / "images")
    return out


def _records(n_hosts, versions=3):
    return [{"image_id": 100 * h + v, "host_id": f"cls/{h:04d}", "file_name": f"{h}_{v}.png"}
            for h in range(n_hosts) for v in range(versions)]


def test_host_subsets_are_nested_and_deterministic():
    records = _records(40)
    a = host_subsets(records, (5, 12, 40), seed=3)
    b = host_subsets(list(reversed(records)), (40, 12, 5), seed=3)  # order of input irrelevant
    assert a == b
    assert [len(a[n]) for n in (5, 12, 40)] == [5, 12, 40]
    assert a[12][:5] == a[5] and a[40][:12] == a[12]  # nested
    assert len(set(a[40])) == 40 and set(a[40]) == {r["host_id"] for r in records}
    other = host_subsets(records, (12,), seed=4)
    assert other[12] != a[12]  # the seed matters
    with pytest.raises(ValueError, match="outside 1..40"):
        host_subsets(records, (41,))
    with pytest.raises(ValueError, match="x.png"):
        host_subsets([{"image_id": 1, "file_name": "x.png"}], (1,))


def test_f1_best_threshold_is_the_sweep_maximum():
    thresholds = np.linspace(0, 1, 5)
    # 10 true clumps; detections fall and matches fall with the threshold.
    n_det = np.array([40, 20, 10, 4, 0])
    n_matched = np.array([9, 8, 7, 3, 0])
    report = {"thresholds": thresholds, "curves": {"all": {
        "n_true": np.full(5, 10), "n_detections": n_det, "n_matched": n_matched}}}
    f1 = 2 * n_matched / (10 + n_det)
    thresh, best = f1_best_threshold(report)
    assert thresh == pytest.approx(0.5) and best == pytest.approx(f1.max()) == 0.7


def test_limited_dataset_spreads_over_the_images(tiny_hosts):
    full = DatasetCatalog.get("tinyhosts_test")
    name = limited_dataset("tinyhosts_test", 2)
    sub = DatasetCatalog.get(name)
    ids = sorted(r["image_id"] for r in full)
    assert name == "tinyhosts_test_n2" and sorted(r["image_id"] for r in sub) == [ids[0], ids[-1]]
    assert limited_dataset("tinyhosts_test", None) == "tinyhosts_test"
    assert limited_dataset("tinyhosts_test", 10 ** 6) == "tinyhosts_test"


def _tiny_opts():
    return [
        "MODEL.ZOOBOT.ARCH", "resnet10t", "MODEL.FPN.OUT_CHANNELS", "16",
        "MODEL.ROI_BOX_HEAD.FC_DIM", "32", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
        "SOLVER.STEPS", "()", "SOLVER.BASE_LR", "0.001", "SOLVER.CHECKPOINT_PERIOD", "1000",
    ]


def test_study_writes_one_row_per_run_and_resumes(tiny_hosts, tiny_synthetic, tmp_path):
    spec = TransferSpec(
        output_dir=str(tmp_path / "study"), backbones=("bn", "frozen"), sizes=(2, 6),
        train_dataset="tinyhosts_train", val_dataset="tinyhosts_val",
        tests={"hosts": "tinyhosts_test", "sim": "tinysim_val"}, test_opts={},
        config_file=str(REPO / "configs" / "Transfer" / "Base-Lite0.yaml"), opts=_tiny_opts(),
        backbone_opts={"bn": ["MODEL.ZOOBOT.NORM", "BN"],
                       "frozen": ["MODEL.ZOOBOT.NORM", "FrozenBN"]},
        copy_table=str(tmp_path / "docs" / "transfer_table.md"), caption="Written by a test.")
    rows = run_study(spec, progress=False)
    out = Path(spec.output_dir)
    assert [(r["backbone"], r["n_hosts"]) for r in rows] == [
        ("bn", 2), ("frozen", 2), ("bn", 6), ("frozen", 6)]
    # Each size trains on its hosts' images only (two versions per host), nested.
    hosts = {n: (out / "subsets" / f"hosts_{n}.txt").read_text().split() for n in (2, 6)}
    assert hosts[6][:2] == hosts[2] and len(set(hosts[6])) == 6
    assert [r["n_train_images"] for r in rows] == [4, 4, 12, 12]
    train = DatasetCatalog.get("tinyhosts_train_h2")
    assert {r["host_id"] for r in train} == set(hosts[2])
    # Test counts: every non-crowd clump of the test split is a true clump.
    n_true = sum(a.get("iscrowd", 0) == 0 for r in DatasetCatalog.get("tinyhosts_test")
                 for a in r["annotations"])
    for r in rows:
        assert r["retrained"] and r["hosts_n_true"] == n_true > 0
        assert 0.0 <= r["thresh"] <= 1.0 and r["max_iter"] == 2
        assert r["hosts_n_matched"] <= min(r["hosts_n_true"], r["hosts_n_detections"])
        assert r["hosts_dataset"] == "tinyhosts_test" and r["sim_dataset"] == "tinysim_val"
        assert (out / f"{r['backbone']}_{r['n_hosts']}" / "model_final.pth").is_file()
    # The table: Markdown (and its copy), CSV and JSON, one row per (backbone, size).
    md = (out / "transfer.md").read_text()
    assert md == (tmp_path / "docs" / "transfer_table.md").read_text()
    assert md.startswith("Written by a test.\n\n| backbone |")
    body = [line for line in md.splitlines() if line.startswith("| bn") or
            line.startswith("| frozen")]
    assert len(body) == 4 and "| bn | 2 (4) | 2 |" in body[0]
    with open(out / "transfer.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert len(json.loads((out / "transfer.json").read_text())) == 4
    assert (out / "transfer.png").stat().st_size > 0

    # Resume: nothing retrained (model_final.pth untouched), same numbers.
    finals = sorted(out.glob("*/model_final.pth"))
    mtimes = [p.stat().st_mtime_ns for p in finals]
    again = run_study(spec, progress=False)
    assert [p.stat().st_mtime_ns for p in finals] == mtimes
    assert not any(r["retrained"] for r in again)
    keys = ("thresh", "hosts_F1", "hosts_n_detections", "sim_n_matched", "train_seconds")
    assert [[r[k] for k in keys] for r in again] == [[r[k] for k in keys] for r in rows]


def test_tool_builds_the_schedule(load_tool):
    tool = load_tool("transfer_study")
    args = tool.parse_args(["--sizes", "100", "880", "--max-iter", "150", "--backbones",
                            "random", "imagenet", "--test-limit", "hosts=420",
                            "--test", "hosts=gz2hosts_test", "MODEL.FPN.OUT_CHANNELS", "32"])
    spec = tool.spec_from_args(args, ["--sizes", "100", "880"])
    assert spec.caption.startswith("Written by `python tools/transfer_study.py --sizes 100 880` "
                                   "on ") and "CPU" in spec.caption
    assert list(spec.sizes) == [100, 880] and list(spec.backbones) == ["random", "imagenet"]
    assert spec.tests == {"hosts": "gz2hosts_test"} and spec.test_limits == {"hosts": 420}
    opts = dict(zip(spec.opts[::2], spec.opts[1::2]))
    assert opts["SOLVER.MAX_ITER"] == "150" and opts["SOLVER.STEPS"] == "(100,131,)"
    assert opts["MODEL.FPN.OUT_CHANNELS"] == "32"
    with pytest.raises(SystemExit):
        tool.spec_from_args(tool.parse_args(["--test-limit", "hosts"]))
