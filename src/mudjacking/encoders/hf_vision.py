"""Adapter for Hugging Face ``transformers`` vision models in a local ``save_pretrained`` directory.

ViT, CLIP's vision tower (with or without projection), ResNet, ConvNeXt and any other model whose output has
``image_embeds``, ``pooler_output`` or a CLS token. Preprocessing (resize, normalise) is read from the saved
``preprocessor_config.json`` and done in torch, so it stays differentiable and batched for occlusion and patching.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import transformers
from torch import Tensor

from mudjacking.encoders.base import (
    ENCODER_CONFIG_FILE,
    ImageEncoder,
    ImageInputSpec,
    ModelLoadError,
    register_adapter,
    require_complete_weights,
    unwrap_output,
)
from mudjacking.jsonfiles import read_json_file

PROCESSOR_FILE = "preprocessor_config.json"
_VISION_MODEL_TYPES = {
    "vit",
    "clip",
    "clip_vision_model",
    "resnet",
    "convnext",
    "convnextv2",
    "dinov2",
    "deit",
    "swin",
    "beit",
    "siglip",
    "siglip_vision_model",
    "mobilenet_v2",
    "efficientnet",
    "regnet",
}


def _hf_config(path: Path) -> dict[str, Any] | None:
    config_file = path / "config.json"
    if not config_file.exists():
        return None
    return read_json_file(config_file, ModelLoadError, "re-save the model with save_pretrained")


def _looks_like_vision_model(path: Path) -> bool:
    config = _hf_config(path)
    return config is not None and config.get("model_type") in _VISION_MODEL_TYPES


def _input_spec_from(
    path: Path,
    config: transformers.PretrainedConfig,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
) -> ImageInputSpec:
    """Size, mean and std from the saved image processor, overridden by the caller's ``image_mean``/``image_std``.

    A directory without ``preprocessor_config.json`` does not say how its pixels were normalised, and a guess is
    silently wrong: a ResNet trained on raw [0, 1] pixels, read with mean/std 0.5, embedded a reported bug and its
    reference at cosine 0.9986, so the patch "fixed" a bug the model no longer showed. It is refused instead.
    """
    processor_file = path / PROCESSOR_FILE
    processor = (
        read_json_file(processor_file, ModelLoadError, "re-save it with the image processor's save_pretrained")
        if processor_file.exists()
        else {}
    )
    channels = int(getattr(config, "num_channels", 3))
    if (image_mean is None or image_std is None) and not {"image_mean", "image_std"} <= processor.keys():
        raise ModelLoadError(
            f"{path}: no {PROCESSOR_FILE} with image_mean and image_std, so how the model's pixels were normalised "
            "is unknown; pass --image-mean and --image-std (e.g. --image-mean 0 --image-std 1 for raw [0, 1] "
            f"pixels) or save the model's image processor beside config.json"
        )
    size = processor.get("crop_size") or processor.get("size") or getattr(config, "image_size", None)
    if isinstance(size, dict):
        size = (size.get("height") or size.get("shortest_edge"), size.get("width") or size.get("shortest_edge"))
    elif isinstance(size, int):
        size = (size, size)
    # the caller's values replace these in ``load`` (set_normalisation checks their count)
    mean = processor.get("image_mean", [0.0] * channels)
    std = processor.get("image_std", [1.0] * channels)
    return ImageInputSpec(size=tuple(size) if size and all(size) else None, channels=channels, mean=mean, std=std)


@register_adapter("hf-vision", can_load=_looks_like_vision_model)
class HFVisionEncoder(ImageEncoder):
    """A ``transformers`` vision model as an :class:`Encoder`.

    Args:
        model: the loaded model (e.g. ``ViTModel``, ``CLIPVisionModelWithProjection``, ``ResNetModel``).
        input_spec: resize/normalisation applied to raw images before ``model(pixel_values=...)``.
    """

    def __init__(
        self, model: transformers.PreTrainedModel, input_spec: ImageInputSpec, processor_config: str | None = None
    ) -> None:
        super().__init__(input_spec)
        self.model = model
        self.processor_config = processor_config  # copied verbatim on save, so AutoImageProcessor still works

    def features(self, pixel_values: Tensor) -> Tensor:
        return unwrap_output(self.model(pixel_values=pixel_values))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.model.save_pretrained(directory, safe_serialization=True)
        if self.processor_config is not None:
            (directory / PROCESSOR_FILE).write_text(self.processor_config)
        self._write_config(directory, {"input_spec": self.input_spec_dict()})

    @classmethod
    def load(
        cls,
        directory: Path,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **_: Any,
    ) -> HFVisionEncoder:
        """Loads the model; ``image_mean``/``image_std`` override (or stand in for) its saved normalisation."""
        config_json = _hf_config(directory)
        if config_json is None:
            raise ModelLoadError(f"{directory}: no config.json; save the model with save_pretrained")
        try:
            config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
            if config_json.get("model_type") == "clip":
                # a full CLIP checkpoint: keep its vision tower and the projection into the shared space
                config.vision_config.projection_dim = config.projection_dim
                model, loading = transformers.CLIPVisionModelWithProjection.from_pretrained(
                    directory, config=config.vision_config, local_files_only=True, output_loading_info=True
                )
            else:
                model, loading = _model_class(config_json).from_pretrained(
                    directory, local_files_only=True, output_loading_info=True
                )
        except Exception as error:  # transformers and safetensors raise many types for unreadable checkpoints
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ModelLoadError(f"{directory}: transformers could not load it ({first})") from error
        require_complete_weights(directory, loading)
        native = directory / ENCODER_CONFIG_FILE
        if native.exists() and image_mean is None and image_std is None:
            spec = ImageInputSpec(**json.loads(native.read_text())["input_spec"])
        else:
            spec = _input_spec_from(directory, getattr(model, "config", config), image_mean, image_std)
        processor_file = directory / PROCESSOR_FILE
        processor = processor_file.read_text() if processor_file.exists() else None
        encoder = cls(model.eval(), spec, processor)
        encoder.set_normalisation(image_mean, image_std)
        return encoder


def _model_class(config_json: dict[str, Any]) -> Any:
    """The class to load: the saved architecture when it is an encoder (not a classifier), else ``AutoModel``."""
    for name in config_json.get("architectures") or []:
        model_class = getattr(transformers, name, None)
        if model_class is not None and "ForImageClassification" not in name:
            return model_class
    return transformers.AutoModel
