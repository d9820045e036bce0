"""tools/convert_clumpscout.py end to end: consensus table + PNGs -> split -> registered
datasets -> a few training iterations through tools/train_net.py."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from clump_d2.data.datasets import register_all_clump_datasets

REPO = Path(__file__).resolve().parents[2]


def _tiny_clumpscout(root: Path, n=8, size=96, crop=(16, 64), seed=0):
    """n PNGs of size px with Gaussian clumps, and a consensus table of boxes in the crop."""
    rng = np.random.default_rng(seed)
    png = root / "png"
    png.mkdir(parents=True)
    rows = []
    yy, xx = np.mgrid[:size, :size] + 0.5
    for i in range(n):
        img = rng.normal(30, 5, (size, size))
        key = 500000000000 + i
        for k in range(i % 3 + 1):  # 1-3 clumps; the first galaxy's first one off the crop
            cx, cy = rng.uniform(crop[0] + 8, crop[0] + crop[1] - 8, 2)
            if i == 0 and k == 0:
                cx = 4.0
            img += 150 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8.0)
            side = 10.0
            rows.append([36000000 + i, key, f"x/{key}.png", 1 + (k == 2), "clumpy",
                         cx - crop[0] - side / 2, cx - crop[0] + side / 2,
                         cy - crop[0] - side / 2, cy - crop[0] + side / 2])
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert("RGB").save(
            png / f"{key}.png")
    table = root / "groups.csv"
    pd.DataFrame(rows, columns=["image_id", "local_ids", "filename", "label", "label_text",
                                "x1", "x2", "y1", "y2"]).to_csv(table, index=False)
    return table, png, len(rows)


def test_convert_split_register_and_train(tmp_path, tiny_model_opts, load_tool):
    table, png, n_rows = _tiny_clumpscout(tmp_path / "src")
    datasets = tmp_path / "datasets"
    convert = load_tool("convert_clumpscout")
    assert convert.main(["consensus", "--table", f"all={table}", "--images", str(png),
                         "--out", str(datasets / "tinycs"), "--image-size", "96x96",
                         "--crop-offset", "16", "16", "--crop-size", "64x64"]) == 0
    report = json.loads((datasets / "tinycs" / "annotations" / "all.report.json").read_text())
    boxes = report["counts"]["boxes"]
    assert boxes["read"] == n_rows and boxes["dropped"] == {"centre_outside_crop": 1}
    assert boxes["kept"] + boxes["dropped_total"] == boxes["read"]
    assert (datasets / "tinycs" / "images" / "500000000000.png").is_symlink()
    assert convert.main(["split", "--dataset", str(datasets / "tinycs"), "--fractions",
                         "train=0.5", "val=0.5", "--seed", "1"]) == 0
    names = register_all_clump_datasets(datasets, synthetic=False)
    assert {"tinycs_all", "tinycs_train", "tinycs_val"} <= set(names)
    assert not any("report" in n for n in names)
    register_all_clump_datasets(datasets, synthetic=False)  # registering again is not an error
    train, val = DatasetCatalog.get("tinycs_train"), DatasetCatalog.get("tinycs_val")
    assert len(train) + len(val) == 8
    assert sum(len(d["annotations"]) for d in train + val) == n_rows - 1
    assert MetadataCatalog.get("tinycs_val").thing_classes == ["clump", "odd_clump"]
    assert all(d["crop"] == [16.0, 16.0, 64, 64] and d["width"] == 64 for d in train)

    train_net = load_tool("train_net")
    out = tmp_path / "out"
    opts = tiny_model_opts(out)
    opts[opts.index("DATASETS.TRAIN") + 1] = "('tinycs_train',)"
    opts[opts.index("DATASETS.TEST") + 1] = "('tinycs_val',)"
    opts[opts.index("SOLVER.MAX_ITER") + 1] = "3"
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", str(REPO / "configs" / "quickstart.yaml"), *opts])
    train_net.main(args)
    assert (out / "model_final.pth").is_file()
    lines = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    losses = [r["total_loss"] for r in lines if "total_loss" in r]
    assert losses and all(math.isfinite(v) for v in losses)
    assert max(r["iteration"] for r in lines if "total_loss" in r) == 2  # 3 iterations
    # the evaluation at the end ran on the converted validation split (its 6 boxes)
    n_val_boxes = sum(len(d["annotations"]) for d in val)
    assert any(r.get("clumps/n_true") == n_val_boxes for r in lines), lines[-1].keys()
