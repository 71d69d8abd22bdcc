"""One contract that every encoder adapter must pass, run on tiny randomly initialised models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers
from conftest import tiny_encoder
from torch import nn

from mudjacking.encoders import Encoder, HFVisionEncoder, ImageInputSpec, ModelLoadError, ModuleEncoder, load_encoder


def _hf_dir(tmp_path: Path, model: transformers.PreTrainedModel, image_size: int = 16) -> Path:
    directory = tmp_path / "hf"
    model.save_pretrained(directory)
    processor = {
        "image_mean": [0.4, 0.4, 0.4],
        "image_std": [0.2, 0.2, 0.2],
        "size": {"height": image_size, "width": image_size},
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(processor))
    return directory


def _vit(tmp_path: Path) -> Path:
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=16,
        patch_size=4,
        num_channels=3,
    )
    return _hf_dir(tmp_path, transformers.ViTModel(config))


def _clip_vision(tmp_path: Path) -> Path:
    config = transformers.CLIPVisionConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=16,
        patch_size=4,
        projection_dim=24,
    )
    return _hf_dir(tmp_path, transformers.CLIPVisionModelWithProjection(config))


def _clip_full(tmp_path: Path) -> Path:
    vision = dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=16, patch_size=4
    )
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, vocab_size=99)
    config = transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=24)
    return _hf_dir(tmp_path, transformers.CLIPModel(config))


def _resnet(tmp_path: Path) -> Path:
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_channels=3)
    return _hf_dir(tmp_path, transformers.ResNetModel(config))


def _module(tmp_path: Path) -> Path:
    directory = tmp_path / "native"
    directory.mkdir()
    tiny_encoder(channels=3).save(directory)
    return directory


ADAPTERS: dict[str, Callable[[Path], Path]] = {
    "module": _module,
    "vit": _vit,
    "clip-vision": _clip_vision,
    "clip-full": _clip_full,
    "resnet": _resnet,
}
EXPECTED_DIM = {"module": 64, "vit": 32, "clip-vision": 24, "clip-full": 24, "resnet": 16}
# ResNet's pooled output follows a ReLU: its embeddings are all positive by design (see README, "Geometry").
SIGNED = {"module", "vit", "clip-vision", "clip-full"}


@pytest.fixture(params=sorted(ADAPTERS))
def saved(request, tmp_path) -> tuple[str, Path]:
    torch.manual_seed(0)
    return request.param, ADAPTERS[request.param](tmp_path)


def test_contract(saved, tmp_path):
    name, directory = saved
    encoder = load_encoder(directory)
    assert isinstance(encoder, Encoder)
    images = torch.rand(3, 3, 20, 20)  # another size than the model's: the adapter resizes
    embeddings = encoder.embed(images)
    assert embeddings.shape == (3, EXPECTED_DIM[name])
    assert torch.equal(embeddings, encoder.embed(images)), "embedding must be deterministic in eval mode"
    assert name not in SIGNED or (embeddings < 0).any(), (
        "embeddings confined to the positive orthant make cosine losses meaningless"
    )

    grey = encoder.embed(torch.rand(2, 1, 20, 20))
    assert grey.shape == (2, EXPECTED_DIM[name])

    pixels = images.clone().requires_grad_(True)
    encoder(pixels).pow(2).sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0, "gradients must reach the raw pixels"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())

    out = tmp_path / "resaved"
    out.mkdir()
    encoder.save(out)
    assert (out / "model.safetensors").exists()
    if name != "module":
        assert (out / "preprocessor_config.json").read_text() == (directory / "preprocessor_config.json").read_text()
    assert torch.allclose(load_encoder(out).embed(images), embeddings, atol=1e-5)


def test_hf_preprocessing_is_read_from_the_processor_config(tmp_path):
    encoder = load_encoder(_vit(tmp_path))
    assert isinstance(encoder, HFVisionEncoder)
    assert encoder.input_spec.size == (16, 16)
    assert encoder.input_spec.mean == (0.4, 0.4, 0.4)


def test_pickled_modules_need_an_explicit_opt_in(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(48, 5)), path)
    with pytest.raises(ModelLoadError, match="--allow-pickle"):
        load_encoder(path)
    encoder = load_encoder(path, allow_pickle=True, input_spec=ImageInputSpec(channels=3))
    assert encoder.embed(torch.rand(2, 3, 4, 4)).shape == (2, 5)


def test_bad_model_paths_name_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_encoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="empty: no model found"):
        load_encoder(tmp_path / "empty")
    broken = _module(tmp_path)
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(Exception, match="model.safetensors"):
        load_encoder(broken)


def test_module_encoder_without_architecture_refuses_to_save(tmp_path):
    encoder = ModuleEncoder(nn.Flatten(), ImageInputSpec(channels=1, mean=(0.0,), std=(1.0,)))
    with pytest.raises(NotImplementedError):
        encoder.save(tmp_path)


@pytest.mark.parametrize("change", [{"num_hidden_layers": 2}, {"add_pooling": True}])
def test_a_checkpoint_that_leaves_weights_to_chance_is_refused(tmp_path, change):
    directory = _vit(tmp_path)
    if "add_pooling" in change:  # saved without the pooler the embedding is read from
        config = transformers.ViTConfig.from_pretrained(directory)
        transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(directory)
    else:  # a config that adds a layer the weights do not hold
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ModelLoadError) as caught:
        load_encoder(directory)
    message = str(caught.value)
    assert message.startswith(str(directory)) and "missing" in message and "at random" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "message"),
    [("[" * 100_000 + "]" * 100_000, "nested too deep"), ("[1, 2]", "a JSON array where object is expected")],
)
def test_a_model_config_that_is_no_json_object_is_one_line(tmp_path, text, message):
    directory = _vit(tmp_path)
    (directory / "config.json").write_text(text)
    with pytest.raises(ModelLoadError) as caught:
        load_encoder(directory)
    assert str(directory / "config.json") in str(caught.value) and message in str(caught.value)
