"""The one thing the rest of the library knows about a foundation model: a batch of inputs -> ``Tensor[B, D]``.

Everything model-family specific (unpacking Hugging Face outputs, pooling, resizing, normalising) lives in the
adapters next to this file. Losses, trigger search, the patch loop and the attacks only call ``encoder(batch)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mudjacking.errors import ConfigError, ModelLoadError
from mudjacking.jsonfiles import read_json_file

ENCODER_CONFIG_FILE = "mudjacking_encoder.json"


@dataclass
class ImageInputSpec:
    """How raw images (float ``[B, C, H, W]`` in [0, 1], any size) become the network's input.

    Args:
        size: (height, width) the network expects; ``None`` keeps the input size.
        channels: channels the network expects; grey images are repeated to 3, RGB averaged to 1.
        mean: per-channel mean subtracted after resizing.
        std: per-channel standard deviation divided by.
    """

    size: tuple[int, int] | None = None
    channels: int = 3
    mean: Sequence[float] = field(default_factory=lambda: (0.0, 0.0, 0.0))
    std: Sequence[float] = field(default_factory=lambda: (1.0, 1.0, 1.0))

    def __post_init__(self) -> None:
        if self.size is not None:
            self.size = (int(self.size[0]), int(self.size[1]))
            if min(self.size) < 1:
                raise ConfigError(f"size must be positive, got {self.size}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(f"mean and std need {self.channels} values, got {self.mean} and {self.std}")
        if not all(s > 0 for s in self.std):  # NaN too
            raise ConfigError(f"std must be positive, got {self.std}")


class Encoder(nn.Module):
    """A foundation model seen as ``inputs -> Tensor[B, D]``.

    Subclasses implement :meth:`forward`, :meth:`save` and a ``load`` classmethod, and register with
    :func:`register_adapter` so :func:`load_encoder` can find them. Encoders are ``nn.Module`` so that
    ``copy.deepcopy``, ``parameters()`` and ``state_dict()`` work as everywhere in PyTorch.
    """

    modality: ClassVar[str] = "image"
    adapter_name: ClassVar[str] = ""

    def embed(self, inputs: Any, batch_size: int = 256, show_progress: bool = False) -> Tensor:
        """Embeds ``inputs`` without gradients in eval mode, in batches; returns ``Tensor[N, D]`` on the CPU.

        Sentences are embedded in order of length (and returned in the input order), so each batch pads to
        similar lengths; on movie-review snippets that halves the time.
        """
        from mudjacking.progress import progress_bar

        order = None
        if not isinstance(inputs, Tensor) and len(inputs) and isinstance(inputs[0], str):
            order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
            inputs = [inputs[i] for i in order]
        was_training = self.training
        self.eval()
        device = self.device
        chunks = []
        starts = range(0, len(inputs), batch_size)
        with torch.no_grad(), progress_bar(len(starts), "embedding", enabled=show_progress) as advance:
            for start in starts:
                batch = inputs[start : start + batch_size]
                if isinstance(batch, Tensor):
                    batch = batch.to(device)
                chunks.append(self(batch).float().cpu())
                advance()
        self.train(was_training)
        embeddings = torch.cat(chunks) if chunks else torch.empty(0)
        if order is not None:
            embeddings[torch.tensor(order)] = embeddings.clone()
        return embeddings

    def stages(self) -> list[tuple[str, Callable[[Any], Any]]] | None:
        """The forward pass as a chain of stages, each with the parameter-name prefix of what it runs (``""`` for a
        stage without parameters): the output of one is the input of the next. ``None`` when the network does not
        say. The patch uses it to run a frozen lower part once per input instead of once per step."""
        return None

    def split_at(self, first: int) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
        """The forward pass as two callables: :meth:`stages` below ``first``, and the rest. Each runs its stages in
        turn; a network whose stages cost a call each may run a run of them in one (see ``HFTextEncoder``)."""
        stages = self.stages() or []

        def chain(parts: list[tuple[str, Callable[[Any], Any]]]) -> Callable[[Any], Any]:
            def run(value: Any) -> Any:
                for _, stage in parts:
                    value = stage(value)
                return value

            return run

        return chain(stages[:first]), chain(stages[first:])

    @property
    def device(self) -> torch.device:
        try:
            return next(self.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    def save(self, directory: str | Path) -> None:
        """Writes the encoder into an existing, empty ``directory`` in its own format (safetensors, no pickle)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    def _write_config(self, directory: Path, extra: dict[str, Any]) -> None:
        payload = {"adapter": self.adapter_name, "modality": self.modality, **extra}
        (directory / ENCODER_CONFIG_FILE).write_text(json.dumps(payload, indent=2))


class ImageEncoder(Encoder):
    """An encoder of images: resizes, fixes channels and normalises raw ``[B, C, H, W]`` images in [0, 1]."""

    modality = "image"

    def __init__(self, input_spec: ImageInputSpec) -> None:
        super().__init__()
        self.input_spec = input_spec
        self.register_buffer("_mean", torch.tensor(input_spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(input_spec.std).view(1, -1, 1, 1), persistent=False)

    def preprocess(self, images: Tensor) -> Tensor:
        """Raw images ``[B, C, H, W]`` in [0, 1] -> the network's normalised input; differentiable."""
        if images.ndim != 4:
            raise ConfigError(f"expected images [B, C, H, W], got shape {tuple(images.shape)}")
        spec = self.input_spec
        if images.shape[1] != spec.channels:
            images = images.mean(1, keepdim=True) if spec.channels == 1 else images.expand(-1, 3, -1, -1)
        if spec.size is not None and tuple(images.shape[-2:]) != spec.size:
            images = F.interpolate(images, size=spec.size, mode="bilinear", align_corners=False, antialias=True)
        return (images - self._mean) / self._std

    def forward(self, images: Tensor) -> Tensor:
        return self.features(self.preprocess(images))

    def features(self, pixel_values: Tensor) -> Tensor:
        """Normalised network input -> ``Tensor[B, D]``."""
        raise NotImplementedError

    def set_normalisation(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        """Replaces the per-channel mean and/or std (one value stands for every channel)."""
        spec = self.input_spec
        channels = spec.channels

        def per_channel(values: Sequence[float] | None, current: Sequence[float]) -> tuple[float, ...]:
            if values is None:
                return tuple(current)
            values = [float(v) for v in values]
            if len(values) == 1:
                values *= channels
            if len(values) != channels:
                raise ModelLoadError(f"the model takes {channels} channels but {len(values)} values were given")
            return tuple(values)

        self.input_spec = ImageInputSpec(spec.size, channels, per_channel(mean, spec.mean), per_channel(std, spec.std))
        self._mean = torch.tensor(self.input_spec.mean).view(1, -1, 1, 1).to(self._mean)
        self._std = torch.tensor(self.input_spec.std).view(1, -1, 1, 1).to(self._std)

    def input_spec_dict(self) -> dict[str, Any]:
        return asdict(self.input_spec)


@dataclass(frozen=True)
class _Adapter:
    name: str
    can_load: Callable[[Path], bool]
    load: Callable[..., Encoder]


_ADAPTERS: dict[str, _Adapter] = {}


def register_adapter(name: str, can_load: Callable[[Path], bool]) -> Callable[[type[Encoder]], type[Encoder]]:
    """Class decorator: makes an adapter loadable by :func:`load_encoder` under ``name``.

    ``can_load(path)`` says whether a directory without a mudjacking config looks like this adapter's format.
    """

    def decorate(cls: type[Encoder]) -> type[Encoder]:
        cls.adapter_name = name
        _ADAPTERS[name] = _Adapter(name, can_load, cls.load)  # type: ignore[attr-defined]
        return cls

    return decorate


# single-file models by suffix (``.h5`` weights, pickled modules): each adapter module registers its own
_FILE_LOADERS: dict[str, Callable[..., Encoder]] = {}


def register_file_loader(suffixes: Sequence[str], loader: Callable[..., Encoder]) -> None:
    """``loader(path, allow_pickle=..., **options)`` reads a single model file with one of ``suffixes``."""
    for suffix in suffixes:
        _FILE_LOADERS[suffix] = loader


def registered_adapters() -> list[str]:
    return sorted(_ADAPTERS)


def require_modality(encoder: Encoder, modality: str, source: str | Path) -> None:
    """Refuses (``ModelLoadError`` naming ``source``) a model of another modality where ``modality`` is needed."""
    if encoder.modality != modality:
        raise ModelLoadError(f"{source}: a {encoder.modality} model where a {modality} one is needed")


def load_encoder(
    path: str | Path,
    allow_pickle: bool = False,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    **options: Any,
) -> Encoder:
    """Loads an encoder, in eval mode, from a directory written by ``Encoder.save``, a Hugging Face
    ``save_pretrained`` directory, a Keras MobileNetV2 ``.h5``, or (only with ``allow_pickle=True``) a pickled
    ``torch.nn.Module`` file.

    Args:
        image_mean: per-channel mean (or one value for all) the image model's pixels are normalised with, in
            place of what the model directory says. A Hugging Face vision directory that says nothing is refused
            without it: a guessed normalisation can hide the very bug being patched.
        image_std: the matching standard deviation.

    Raises:
        ModelLoadError: one line naming the path and what to do.
    """
    path = Path(path)
    if image_mean is not None or image_std is not None:
        options = {**options, "image_mean": image_mean, "image_std": image_std}
    encoder = _load_encoder(path, allow_pickle, **options)
    if image_mean is not None or image_std is not None:
        if not isinstance(encoder, ImageEncoder):
            raise ModelLoadError(f"{path}: a {encoder.modality} model; --image-mean/--image-std apply to image models")
        encoder.set_normalisation(image_mean, image_std)
    return encoder.eval()


def _load_encoder(path: Path, allow_pickle: bool, **options: Any) -> Encoder:
    if not path.exists():
        raise ModelLoadError(
            f"{path}: no such file or directory; pass a model directory (save_pretrained or mudjacking)"
        )
    if path.is_file():
        if path.suffix in _FILE_LOADERS:
            return _FILE_LOADERS[path.suffix](path, allow_pickle=allow_pickle, **options)
        raise ModelLoadError(
            f"{path}: not a model directory; pass the directory that holds config.json or {ENCODER_CONFIG_FILE}"
        )
    config_file = path / ENCODER_CONFIG_FILE
    if config_file.exists():
        name = read_json_file(config_file, ModelLoadError, "re-save the model").get("adapter")
        if name not in _ADAPTERS:
            raise ModelLoadError(f"{config_file}: unknown adapter {name!r}; known: {', '.join(registered_adapters())}")
        return _ADAPTERS[name].load(path, **options)
    for adapter in _ADAPTERS.values():
        if adapter.can_load(path):
            return adapter.load(path, **options)
    raise ModelLoadError(
        f"{path}: no model found; expected a save_pretrained directory (config.json + model.safetensors) "
        f"or a directory written by mudjacking ({ENCODER_CONFIG_FILE})"
    )


def require_complete_weights(directory: Path, loading_info: dict[str, Any], may_miss: tuple[str, ...] = ()) -> None:
    """Refuses (``ModelLoadError``) a checkpoint that leaves weights of its own model to chance: transformers starts
    missing ones at random with a warning, and a patch would then patch a partly random network (a folder whose
    weights belong to another model, or whose config adds layers). ``may_miss``: name prefixes the embedding never
    reads (a text pooler under mean pooling). Weights the model does not use (a classifier head) are left alone."""
    missing = sorted(k for k in loading_info.get("missing_keys", ()) if not (may_miss and k.startswith(may_miss)))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelLoadError(
            f"{directory}: its weights do not fill the model its config.json describes ({len(missing)} missing: "
            f"{shown}); transformers would start them at random. Save the model with save_pretrained from the model "
            "itself, or fix config.json"
        )


def unwrap_output(output: Any) -> Tensor:
    """Takes the embedding out of whatever a network returns: a tensor, a tuple, or a Hugging Face output."""
    if isinstance(output, Tensor):
        tensor = output
    elif isinstance(output, (tuple, list)):
        tensor = output[0]
    else:
        for key in ("image_embeds", "text_embeds", "sentence_embedding", "pooler_output", "last_hidden_state"):
            value = getattr(output, key, None)
            if value is not None:
                tensor = value[:, 0] if key == "last_hidden_state" and value.ndim == 3 else value
                break
        else:
            raise TypeError(f"cannot find an embedding in {type(output).__name__}")
    return tensor.flatten(1)
