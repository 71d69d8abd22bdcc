"""Encoders: one protocol (``inputs -> Tensor[B, D]``) and adapters that register themselves by name."""

from mudjacking.encoders import architectures, hf_text, hf_vision, mobilenet_v2, module  # noqa: F401  (register)
from mudjacking.encoders.architectures import ConvEncoderNet
from mudjacking.encoders.base import (
    Encoder,
    ImageEncoder,
    ImageInputSpec,
    ModelLoadError,
    load_encoder,
    register_adapter,
    registered_adapters,
)
from mudjacking.encoders.hf_text import HFTextEncoder
from mudjacking.encoders.hf_vision import HFVisionEncoder
from mudjacking.encoders.module import ModuleEncoder, register_architecture

__all__ = [
    "ConvEncoderNet",
    "Encoder",
    "HFTextEncoder",
    "HFVisionEncoder",
    "ImageEncoder",
    "ImageInputSpec",
    "ModelLoadError",
    "ModuleEncoder",
    "load_encoder",
    "register_adapter",
    "register_architecture",
    "registered_adapters",
]
