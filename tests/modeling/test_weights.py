"""Encoder weights: every supported layout round-trips into the timm features model."""
import argparse
import json

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

import clump_d2  # noqa: F401  (compat layer first)
from clump_d2.modeling import ZoobotEncoder, load_encoder_weights
from clump_d2.modeling.backbone import WeightsUnavailableError, read_encoder_state_dict
from clump_d2.modeling.backbone.weights import TORCHVISION_SEQUENTIAL_CHILDREN, canonical_key
from clump_d2.modeling.checkpoint import UnsafeWeightsError

HUB_REPO = "mwalmsley/zoobot-encoder-convnext_pico"


@pytest.fixture(scope="module")
def pico():
    """A randomly initialised plain convnext_pico as Zoobot 2 publishes it (no classifier)."""
    torch.manual_seed(0)
    model = timm.create_model("convnext_pico", pretrained=False, num_classes=0)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def pico_encoder():
    """One convnext_pico encoder reused by the format tests (building one costs ~0.5 s)."""
    return ZoobotEncoder(arch="convnext_pico")


def load_zeroed(encoder: ZoobotEncoder, weights: str):
    """Zero every tensor of ``encoder``, then load ``weights`` as the builder does."""
    with torch.no_grad():
        for tensor in encoder.encoder.state_dict().values():
            tensor.zero_()
    return load_encoder_weights(encoder.encoder, weights, arch=encoder.arch, first_conv="stem.0")


def assert_loaded(encoder: ZoobotEncoder, source: dict, prefix: str = ""):
    """Every encoder tensor equals the source tensor of the same (canonical) name."""
    got = {canonical_key(k): v for k, v in encoder.encoder.state_dict().items()}
    src = {canonical_key(k[len(prefix):]): v for k, v in source.items() if k.startswith(prefix)}
    assert got, "encoder has tensors"
    for key, value in got.items():
        assert key in src, key
        assert torch.equal(value, src[key]), key
    return len(got)


def write_hub_dir(path, state, weights_file="model.safetensors", arch="convnext_pico"):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(
        {"architecture": arch, "num_classes": 0, "pretrained_cfg": {"input_size": [3, 224, 224]}}))
    if weights_file.endswith(".safetensors"):
        save_file(state, str(path / weights_file))
    else:
        torch.save(state, str(path / weights_file))
    return path


@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_hub_layout_directory(tmp_path, pico, pico_encoder, weights_file):
    folder = write_hub_dir(tmp_path / "zoobot-encoder-convnext_pico", pico, weights_file)
    if weights_file == "model.safetensors":  # once through the builder, once through the loader
        encoder = ZoobotEncoder(arch="convnext_pico", weights=str(folder))
        report = encoder.load_report
    else:
        encoder, report = pico_encoder, load_zeroed(pico_encoder, str(folder))
    n = assert_loaded(encoder, pico)
    assert report.layout == "timm" and report.file.endswith(weights_file)
    assert len(report.loaded) == n and report.missing == [] and report.inflated == []
    # the classifier's pre-logits norm is not part of the features model
    assert sorted(report.unexpected) == ["head.norm.bias", "head.norm.weight"]


def test_hub_layout_directory_checks_architecture(tmp_path, pico, pico_encoder):
    folder = write_hub_dir(tmp_path / "w", pico, arch="convnext_nano")
    with pytest.raises(ValueError, match="holds a 'convnext_nano' encoder"):
        load_zeroed(pico_encoder, str(folder))
    with pytest.raises(FileNotFoundError, match="holds none of model.safetensors"):
        load_zeroed(pico_encoder, str(tmp_path))


@pytest.mark.parametrize("suffix,nest", [(".safetensors", None), (".pth", None),
                                         (".pt", "state_dict"), (".pth", "model")])
def test_single_file(tmp_path, pico, pico_encoder, suffix, nest):
    path = tmp_path / f"encoder{suffix}"
    if suffix == ".safetensors":
        save_file(pico, str(path))
    else:
        torch.save({nest: pico} if nest else pico, str(path))
    report = load_zeroed(pico_encoder, str(path))
    assert_loaded(pico_encoder, pico)
    assert report.file == str(path) and report.missing == []


def test_zoobot_lightning_checkpoint(tmp_path, pico, pico_encoder):
    state = {f"encoder.{k}": v for k, v in pico.items()}
    state["head.linear.weight"] = torch.randn(34, 512)
    # Lightning pickles hyper-parameters (here an argparse.Namespace, which torch's safe loader
    # refuses): unpickling runs code, so it needs the explicit opt-in, never a silent fallback.
    ckpt = str(tmp_path / "zoobot.ckpt")
    torch.save({"state_dict": state, "epoch": 3, "hyper_parameters": argparse.Namespace(lr=1e-4)},
               ckpt)
    with pytest.raises(UnsafeWeightsError, match="MODEL.WEIGHTS_ALLOW_PICKLE"):
        ZoobotEncoder(arch="convnext_pico", weights=ckpt)
    with pytest.raises(UnsafeWeightsError, match="run any code"):
        read_encoder_state_dict(ckpt)
    report = load_encoder_weights(pico_encoder.encoder, ckpt, arch="convnext_pico",
                                  allow_pickle=True)
    assert_loaded(pico_encoder, pico)
    assert report.layout == "lightning-encoder"
    assert "head.linear.weight" not in report.unexpected  # outside the encoder
    # the same weights without the pickled extras load safely
    torch.save({"state_dict": state, "epoch": 3}, str(tmp_path / "safe.ckpt"))
    encoder = ZoobotEncoder(arch="convnext_pico", weights=str(tmp_path / "safe.ckpt"))
    assert_loaded(encoder, pico)


def _torchvision_sequential_state(depth: int, prefix: str):
    """A Zoobot 1.x checkpoint: Sequential(encoder = resnet children but fc, head)."""
    torch.manual_seed(1)
    resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    for module in resnet.modules():  # non-trivial statistics, so a misplaced BN would show
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    encoder = nn.Sequential(*list(resnet.children())[:-1])
    head = nn.Linear(resnet.fc.in_features, 34)
    zoobot = nn.Sequential(encoder, head)
    state = {f"{prefix}{k}": v for k, v in zoobot.state_dict().items()}
    return resnet, state


@pytest.mark.parametrize("depth,prefix", [(50, "model."), (18, "module.model.")])
def test_zoobot_1x_torchvision_resnet(tmp_path, depth, prefix):
    resnet, state = _torchvision_sequential_state(depth, prefix)
    path = tmp_path / "zoobot_1x.ckpt"
    torch.save({"state_dict": state, "epoch": 10}, str(path))
    encoder = ZoobotEncoder(arch=f"resnet{depth}", weights=str(path))
    report = encoder.load_report
    assert report.layout == "torchvision-sequential"
    assert report.missing == []
    assert sorted(report.unexpected) == [f"model.1.{p}" for p in ("bias", "weight")]
    tv_state = {k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    assert len(report.loaded) == len(tv_state)
    enc_state = encoder.encoder.state_dict()
    for key, value in tv_state.items():  # same names inside the layers, by the key map
        assert torch.equal(enc_state[key], value), key
    # and the same function: res5 == torchvision's layer4 output
    resnet.eval(), encoder.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        trunk = nn.Sequential(*list(resnet.children())[:-2])
        torch.testing.assert_close(encoder(x)["res5"], trunk(x), rtol=1e-4, atol=1e-5)
    assert TORCHVISION_SEQUENTIAL_CHILDREN[4] == "layer1"


def test_shape_mismatch_fails_unless_allowed(tmp_path, pico, pico_encoder):
    bad = dict(pico)
    bad["stages.3.blocks.1.mlp.fc2.weight"] = torch.zeros(7, 7)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"stages.3.blocks.1.mlp.fc2.weight: checkpoint \(7, 7\)"):
        load_zeroed(pico_encoder, str(tmp_path / "bad.safetensors"))
    encoder = ZoobotEncoder(arch="convnext_pico", weights=str(tmp_path / "bad.safetensors"),
                            allow_shape_mismatch=True)
    report = encoder.load_report
    assert report.skipped == [("stages.3.blocks.1.mlp.fc2.weight", (7, 7), (512, 2048, 1, 1))]
    assert report.missing == ["stages_3.blocks.1.mlp.fc2.weight"]
    # a checkpoint of another architecture: nothing fits
    other = timm.create_model("resnet18", pretrained=False, num_classes=0).state_dict()
    save_file(dict(other), str(tmp_path / "r18.safetensors"))
    with pytest.raises(ValueError, match="none of the checkpoint"):
        load_zeroed(pico_encoder, str(tmp_path / "r18.safetensors"))
    with pytest.raises(FileNotFoundError, match="encoder weights not found"):
        load_zeroed(pico_encoder, str(tmp_path / "absent.pth"))


@pytest.fixture
def offline_hf(tmp_path, monkeypatch):
    """No network, and an empty Hugging Face home."""
    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home


def test_hub_id_offline_without_cache_says_what_to_download(offline_hf):
    with pytest.raises(WeightsUnavailableError) as info:
        ZoobotEncoder(arch="convnext_pico", weights=f"hf_hub:{HUB_REPO}")
    message = str(info.value)
    cache = offline_hf / "hub"
    assert f"Cannot load encoder weights 'hf_hub:{HUB_REPO}'" in message
    assert "offline (HF_HUB_OFFLINE=1)" in message
    assert f"not in the Hugging Face cache {cache}" in message
    for file in ("config.json", "model.safetensors"):
        assert f"https://huggingface.co/{HUB_REPO}/resolve/main/{file}" in message
    assert "MODEL.ZOOBOT.WEIGHTS weights/zoobot-encoder-convnext_pico" in message
    assert f"models--mwalmsley--zoobot-encoder-convnext_pico into {cache}" in message
    assert isinstance(info.value, FileNotFoundError)


def test_hub_id_offline_from_cache(offline_hf, pico, pico_encoder):
    # The layout huggingface_hub writes: refs/main names the snapshot holding the files.
    repo = offline_hf / "hub" / "models--mwalmsley--zoobot-encoder-convnext_pico"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    write_hub_dir(repo / "snapshots" / commit, pico)
    for spelling in ("hf_hub:", "hf-hub:"):
        state, layout, file = read_encoder_state_dict(spelling + HUB_REPO)
        assert file == str(repo / "snapshots" / commit / "model.safetensors")
    encoder = ZoobotEncoder(arch="convnext_pico", weights=f"hf_hub:{HUB_REPO}")
    assert_loaded(encoder, pico)
    # its config.json (convnext_pico) was read and checked
    with pytest.raises(ValueError, match="holds a 'convnext_pico' encoder"):
        load_encoder_weights(pico_encoder.encoder, f"hf_hub:{HUB_REPO}", arch="convnext_nano")
