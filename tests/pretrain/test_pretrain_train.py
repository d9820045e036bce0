"""Pretraining: output loads into the Detectron2 backbone; resumption is exact; the probe."""
import json
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from safetensors.torch import load_file

from clump_d2.engine import build_config
from clump_d2.modeling.backbone.weights import canonical_key
from clump_d2.pretrain.probe import probe_features, run_probe
from clump_d2.pretrain.train import PretrainConfig, pretrain

ARCH = "resnet10t"
REPO = Path(__file__).resolve().parents[2]


def tiny_config(data, out, **kw):
    settings = dict(data_root=str(data), out_dir=str(out), arch=ARCH, size=32, crop=1.0,
                    holdout_fraction=0.5, seed=1, epochs=2, batch_size=6, lr=3e-3,
                    ssl_weight=0.04, expander_dim=32)
    settings.update(kw)
    return PretrainConfig(**settings)


@pytest.fixture(scope="module")
def trained(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    pretrain(tiny_config(image_folder, out))
    return out


def test_output_loads_into_detectron2_backbone(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["architecture"] == ARCH and config["input_size"] == 32
    assert config["pixel_mean"] == [127.5] * 3
    saved = load_file(str(trained / "model.safetensors"))
    # timm's plain-model names, no classifier (resnet10t: 'fc.*').
    import timm

    plain = set(timm.create_model(ARCH, num_classes=0).state_dict())
    assert set(saved) == plain and not any(k.startswith("fc.") for k in saved)
    split = json.loads((trained / "split.json").read_text())
    assert len(split["train"]) == len(split["heldout"]) == 12

    cfg = build_config(str(REPO / "configs" / "Base-ClumpRCNN-FPN.yaml"), opts=[
        "MODEL.BACKBONE.NAME", "build_zoobot_fpn_backbone", "MODEL.ZOOBOT.ARCH", ARCH,
        "MODEL.ZOOBOT.WEIGHTS", str(trained), "MODEL.DEVICE", "cpu",
        "MODEL.PIXEL_MEAN", str(config["pixel_mean"]), "MODEL.PIXEL_STD", str(config["pixel_std"]),
        "MODEL.FPN.OUT_CHANNELS", "16"])
    model = build_model(cfg)
    encoder = model.backbone.bottom_up.encoder
    assert model.backbone.bottom_up.load_report.missing == []
    by_name = {canonical_key(k): v for k, v in saved.items()}
    state = encoder.state_dict()
    assert len(state) > 50
    for key, value in state.items():
        assert torch.equal(value, by_name[canonical_key(key)]), key
    # Training changed the weights: they are not a fresh initialisation.
    torch.manual_seed(1)
    fresh = timm.create_model(ARCH, num_classes=0).state_dict()
    assert not torch.equal(fresh["conv1.0.weight"], saved["conv1.0.weight"])


class Interrupt(Exception):
    pass


def test_resume_gives_the_uninterrupted_weights(image_folder, trained, tmp_path):
    def stop_after_first(epoch, record):
        if epoch == 1:
            raise Interrupt

    out = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        pretrain(tiny_config(image_folder, out), on_epoch_end=stop_after_first)
    assert json.loads((out / "checkpoints" / "last.json").read_text())["epochs_done"] == 1
    assert not (out / "model.safetensors").exists()
    epochs_run = []
    pretrain(tiny_config(image_folder, out), on_epoch_end=lambda e, r: epochs_run.append(e))
    assert epochs_run == [2]  # only the unfinished epoch ran
    a = load_file(str(out / "model.safetensors"))
    b = load_file(str(trained / "model.safetensors"))
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]

    # Finished: re-running does nothing; other settings in the same folder are refused.
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    pretrain(tiny_config(image_folder, out), on_epoch_end=lambda e, r: epochs_run.append(e))
    assert epochs_run == [2] and (out / "model.safetensors").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="other settings"):
        pretrain(tiny_config(image_folder, out, lr=1e-3))


def test_probe_separates_trivial_classes(image_folder, trained, tmp_path):
    rows = run_probe(str(image_folder), ["random", str(trained)], str(tmp_path), arch=ARCH,
                     size=32, crop=1.0, holdout_fraction=0.5, seed=1, folds=3)
    assert [r["encoder"] for r in rows] == ["random", str(trained)]
    assert rows[1]["n"] == 12 and rows[1]["folds"] == 3 and rows[1]["features"] == 512
    assert rows[1]["accuracy"] > 0.9 and rows[1]["roc_auc"] > 0.9
    table = (tmp_path / "probe.md").read_text()
    assert str(trained) in table and f"{rows[1]['accuracy']:.3f}" in table
    assert json.loads((tmp_path / "probe.json").read_text())["rows"] == rows
    # Another split than the encoder's pretraining one would leak: refused.
    with pytest.raises(ValueError, match="another split"):
        run_probe(str(image_folder), [str(trained)], str(tmp_path), arch=ARCH, size=32,
                  crop=1.0, holdout_fraction=0.5, seed=2, folds=3)


def test_probe_features_numbers():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    separable = torch.randn(40, 4, generator=g) + 4.0 * labels[:, None]
    result = probe_features(separable.numpy(), labels.numpy(), folds=4)
    assert result["accuracy"] == 1.0 and result["roc_auc"] == 1.0 and result["n"] == 40
    noise = torch.randn(40, 4, generator=g)
    assert probe_features(noise.numpy(), labels.numpy(), folds=4)["accuracy"] < 0.8
