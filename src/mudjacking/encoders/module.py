"""Adapters for plain ``torch.nn.Module`` image networks.

``ModuleEncoder`` wraps any module that maps a normalised image batch to features. It saves as safetensors
plus a JSON config naming a registered architecture, so it loads back without pickle. A whole pickled module
(``.pt``) loads only when the caller opts in, because unpickling runs arbitrary code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from mudjacking.encoders.base import (
    ENCODER_CONFIG_FILE,
    ImageEncoder,
    ImageInputSpec,
    ModelLoadError,
    register_adapter,
    register_file_loader,
    unwrap_output,
)
from mudjacking.errors import ConfigError
from mudjacking.jsonfiles import read_json_file

WEIGHTS_FILE = "model.safetensors"
_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: lets ``ModuleEncoder`` rebuild a network named ``name`` from its JSON kwargs when loading."""

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _ARCHITECTURES[name] = factory
        return factory

    return decorate


def _has_native_config(path: Path) -> bool:
    return (path / ENCODER_CONFIG_FILE).exists()


@register_adapter("module", can_load=_has_native_config)
class ModuleEncoder(ImageEncoder):
    """Any image network as an :class:`Encoder`.

    Args:
        network: module mapping normalised ``[B, C, H, W]`` to features (tensor, tuple or HF output).
        input_spec: how raw images are resized and normalised for it.
        architecture: registered name used to rebuild ``network`` on load; ``None`` -> cannot be saved.
        architecture_kwargs: JSON-serialisable arguments of that factory.
    """

    def __init__(
        self,
        network: nn.Module,
        input_spec: ImageInputSpec,
        architecture: str | None = None,
        architecture_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(input_spec)
        self.network = network
        self.architecture = architecture
        self.architecture_kwargs = dict(architecture_kwargs or {})

    def features(self, pixel_values: Tensor) -> Tensor:
        return unwrap_output(self.network(pixel_values))

    def stages(self) -> list[tuple[str, Callable[[Any], Any]]] | None:
        """The network's own stages (``network.stages()``, where it has them) after the preprocessing."""
        if not hasattr(self.network, "stages"):
            return None
        parts = [(f"network.{name}" if name else "", stage) for name, stage in self.network.stages()]
        last_name, last = parts[-1]
        return [("", self.preprocess), *parts[:-1], (last_name, lambda features: unwrap_output(last(features)))]

    def save(self, directory: str | Path) -> None:
        if self.architecture is None:
            raise NotImplementedError("ModuleEncoder without a registered architecture cannot be saved without pickle")
        directory = Path(directory)
        save_file({k: v.contiguous() for k, v in self.network.state_dict().items()}, str(directory / WEIGHTS_FILE))
        self._write_config(
            directory,
            {
                "architecture": self.architecture,
                "architecture_kwargs": self.architecture_kwargs,
                "input_spec": self.input_spec_dict(),
            },
        )

    @classmethod
    def load(cls, directory: Path, **_: Any) -> ModuleEncoder:
        config_file = directory / ENCODER_CONFIG_FILE
        config = read_json_file(config_file, ModelLoadError, "re-save the model with mudjacking")
        name = config.get("architecture")
        if name not in _ARCHITECTURES:
            known = ", ".join(sorted(_ARCHITECTURES)) or "none"
            raise ModelLoadError(
                f"{config_file}: unknown architecture {name!r} (known: {known}); import the module that registers it"
            )
        weights = directory / WEIGHTS_FILE
        if not weights.exists():
            raise ModelLoadError(f"{weights}: missing weights file; copy the model's {WEIGHTS_FILE} beside its config")
        kwargs, spec = config.get("architecture_kwargs", {}), config.get("input_spec")
        try:
            network = _ARCHITECTURES[name](**kwargs)
            input_spec = ImageInputSpec(**spec)
        except (TypeError, ConfigError) as error:  # a stranger's config: wrong arguments, a zero std, a size of -5
            raise ModelLoadError(
                f"{config_file}: architecture_kwargs or input_spec do not fit {name!r} ({error}); re-save the model "
                "with mudjacking"
            ) from None
        try:
            state = load_file(str(weights))
        except Exception as error:  # safetensors raises its own error type for corrupt files
            raise ModelLoadError(
                f"{weights}: not a readable safetensors file ({error}); re-save or re-download it"
            ) from error
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise ModelLoadError(f"{weights}: weights do not fit architecture {name!r} ({first})") from error
        return cls(network, input_spec, name, kwargs)


@register_adapter("pickled-module", can_load=lambda path: False)
class PickledModuleEncoder(ModuleEncoder):
    """A whole ``nn.Module`` saved with ``torch.save``; loading it executes pickle, so it needs an explicit opt-in."""

    @classmethod
    def load(  # type: ignore[override]
        cls, path: Path, allow_pickle: bool = False, input_spec: ImageInputSpec | None = None, **_: Any
    ) -> ModuleEncoder:
        if not allow_pickle:
            raise ModelLoadError(
                f"{path}: pickled weights can run arbitrary code; re-run with --allow-pickle "
                "(allow_pickle=True) if you trust the file, or convert it to safetensors"
            )
        network = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(network, nn.Module):
            raise ModelLoadError(
                f"{path}: holds a {type(network).__name__}, not a torch.nn.Module; save the whole module"
            )
        return ModuleEncoder(network, input_spec or ImageInputSpec())


register_file_loader((".pt", ".pth", ".bin", ".pkl", ".ckpt"), PickledModuleEncoder.load)
