"""tools/train_net.py end to end: generate data, train a tiny model, evaluate, re-evaluate."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(args, env):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "train_net.py"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_quickstart_config_trains_and_evaluates_tiny(tmp_path, tiny_model_opts):
    env = dict(os.environ, CLUMP_D2_DATASETS=str(tmp_path / "datasets"))
    out = tmp_path / "out"
    opts = tiny_model_opts(out)
    # train/test on the auto-generated synthetic splits, made tiny
    i = opts.index("DATASETS.TRAIN")
    opts[i + 1] = "('clumpsim_train',)"
    opts[opts.index("DATASETS.TEST") + 1] = "('clumpsim_val',)"
    opts += ["DATASETS.SYNTHETIC.NUM_TRAIN", "6", "DATASETS.SYNTHETIC.NUM_VAL", "4",
             "DATASETS.SYNTHETIC.IMAGE_SIZE", "96", "TEST.CLUMP_EVAL.SCORE_THRESH", "0.0"]
    log = _run(["--config-file", "configs/quickstart.yaml", "--num-gpus", "0", *opts], env)

    val_json = tmp_path / "datasets" / "clumpsim" / "annotations" / "val.json"
    truth = json.loads(val_json.read_text())
    assert len(truth["images"]) == 4
    assert (out / "model_final.pth").is_file()
    assert "copypaste: Task: clumps" in log and "copypaste: Task: bbox" in log
    metrics_file = out / "inference" / "clumpsim_val" / "clump_metrics.json"
    metrics = json.loads(metrics_file.read_text())
    assert metrics["n_true"] == len(truth["annotations"])
    assert 0 <= metrics["n_matched"] <= min(metrics["n_true"], metrics["n_detections"])

    # --eval-only on the saved weights reproduces the same counts
    metrics_file.unlink()
    _run(["--config-file", "configs/quickstart.yaml", "--eval-only", *opts,
          "MODEL.WEIGHTS", str(out / "model_final.pth")], env)
    again = json.loads(metrics_file.read_text())
    for key in ("n_true", "n_detections", "n_matched"):
        assert again[key] == metrics[key]
