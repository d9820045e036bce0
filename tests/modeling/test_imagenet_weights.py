"""Real ImageNet weights from a registry package: EfficientNet-Lite0 onto timm's architecture."""
import numpy as np
import pytest
import timm
import torch
from PIL import Image

from clump_d2.modeling.backbone.imagenet import (
    block_stages,
    efficientnet_pytorch_to_timm,
    is_efficientnet_pytorch_layout,
    resolve_imagenet_weights,
)

EGYPTIAN_CAT = 285  # ImageNet class of scikit-image's chelsea photo


@pytest.fixture(scope="module")
def lite0():
    path, arch = resolve_imagenet_weights("imagenet:efficientnet_lite0")
    return torch.load(path, map_location="cpu", weights_only=True), arch


def test_checkpoint_is_a_trained_efficientnet(lite0):
    state_dict, arch = lite0
    assert arch == "tf_efficientnet_lite0"
    assert is_efficientnet_pytorch_layout(state_dict)
    # Trained weights, not an initialisation: BatchNorm statistics were accumulated.
    assert state_dict["_bn0.running_mean"].abs().sum() > 1.0
    # Lite0's stages hold 1, 2, 2, 3, 3, 4, 1 blocks.
    stages = block_stages(state_dict)
    counts = np.bincount([s for s, _ in stages])
    assert counts.tolist() == [1, 2, 2, 3, 3, 4, 1]


def test_loaded_classifier_calls_chelsea_an_egyptian_cat(lite0):
    skimage_data = pytest.importorskip("skimage.data")
    state_dict, arch = lite0
    model = timm.create_model(arch, num_classes=1000)
    missing, unexpected = model.load_state_dict(efficientnet_pytorch_to_timm(state_dict),
                                                strict=True)
    assert not missing and not unexpected
    model.eval()
    image = Image.fromarray(skimage_data.chelsea()).resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - 0.5) / 0.5  # Lite's own normalisation
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    assert int(probs.argmax()) == EGYPTIAN_CAT
    assert float(probs[EGYPTIAN_CAT]) > 0.6


def test_unknown_names_and_keys_are_errors():
    with pytest.raises(ValueError, match="imagenet:efficientnet_lite0"):
        resolve_imagenet_weights("imagenet:resnet50")
    bad = {"_conv_stem.weight": torch.zeros(1), "_blocks.0._project_conv.weight": torch.zeros(2),
           "_mystery.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="_mystery"):
        efficientnet_pytorch_to_timm(bad)


@pytest.mark.parametrize("config,frozen", [
    ("configs/ClumpScout/imagenet_efficientnet_lite0_finetune.yaml", False),
    ("configs/ClumpScout/imagenet_efficientnet_lite0_frozen.yaml", True),
])
def test_configs_load_the_imagenet_encoder_into_the_fpn(lite0, config, frozen):
    """Through the real registry: every encoder tensor is the checkpoint's."""
    from detectron2.modeling import build_model

    from clump_d2.engine import build_config

    state_dict, _ = lite0
    expected = efficientnet_pytorch_to_timm(state_dict)
    cfg = build_config(config, ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    encoder = model.backbone.bottom_up.encoder
    report = model.backbone.bottom_up.load_report
    assert report is not None and report.layout == "efficientnet-pytorch"
    assert not report.missing
    own = {k.replace("_", "."): v for k, v in encoder.state_dict().items()}
    n_checked = 0
    for key, value in expected.items():
        mine = own.get(key.replace("_", "."))
        if mine is not None:
            assert torch.equal(mine, value), key
            n_checked += 1
    assert n_checked > 200  # all of the encoder (the head's conv/bn/classifier are not in it)
    trainable = [p.requires_grad for p in encoder.parameters()]
    assert (not any(trainable)) if frozen else all(trainable)
