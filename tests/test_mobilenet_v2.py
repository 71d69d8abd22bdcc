"""The Keras MobileNetV2 converter, on ``.h5`` files written in the test in Keras 3's and Keras 2's layouts."""

from __future__ import annotations

import pytest
import torch

from mudjacking.encoders import ModelLoadError, load_encoder
from mudjacking.encoders.mobilenet_v2 import MobileNetV2, _keras_names, _keras_pad

h5py = pytest.importorskip("h5py")


def _random_network() -> MobileNetV2:
    torch.manual_seed(0)
    network = MobileNetV2().eval()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial statistics, so a swapped tensor shows
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return network


def _write_keras_h5(network: MobileNetV2, path, keras2: bool) -> None:
    """What Keras saves: kernels [kh, kw, in, out] (depthwise [kh, kw, channels, 1]), BN gamma/beta/moving_*."""
    state = network.state_dict()
    with h5py.File(path, "w") as handle:
        weights = handle.create_group("model_weights")
        base = weights if keras2 else weights.create_group("mobilenetv2_1.00_224")
        for prefix, conv, norm in _keras_names():
            kernel = state[f"{prefix}.0.weight"]
            depthwise = "depthwise" in conv
            kernel = kernel.permute(2, 3, 0, 1) if depthwise else kernel.permute(2, 3, 1, 0)
            suffix = ":0" if keras2 else ""
            kernel_name = ("depthwise_kernel" if depthwise and keras2 else "kernel") + suffix
            group = base.create_group(f"{conv}/{conv}") if keras2 else base.create_group(conv)
            group[kernel_name] = kernel.numpy()
            group = base.create_group(f"{norm}/{norm}") if keras2 else base.create_group(norm)
            for keras_name, torch_name in [
                ("gamma", "weight"),
                ("beta", "bias"),
                ("moving_mean", "running_mean"),
                ("moving_variance", "running_var"),
            ]:
                group[keras_name + suffix] = state[f"{prefix}.1.{torch_name}"].numpy()
        dense = weights.create_group("dense/dense")  # a classifier head on top is ignored
        dense["kernel"] = torch.zeros(1280, 3).numpy()


@pytest.mark.parametrize("keras2", [False, True], ids=["keras3", "keras2"])
def test_converted_network_matches_the_original(tmp_path, keras2):
    network = _random_network()
    path = tmp_path / "mobilenet.h5"
    _write_keras_h5(network, path, keras2)
    encoder = load_encoder(path, image_size=32)
    assert encoder.input_spec.size == (32, 32)  # the loader's option reaches the converter (it was dropped before)
    images = torch.rand(3, 1, 28, 28)
    expected = network(encoder.preprocess(images))
    assert torch.allclose(encoder(images), expected, atol=1e-5)
    assert encoder(images).shape == (3, 1280)

    (tmp_path / "saved").mkdir()
    encoder.save(tmp_path / "saved")  # safetensors + config: reloads without the .h5
    assert torch.allclose(load_encoder(tmp_path / "saved")(images), expected, atol=1e-5)


def test_keras_padding_for_stride_two_is_bottom_right_on_even_sizes():
    even, odd = _keras_pad(torch.ones(1, 1, 4, 4), 2), _keras_pad(torch.ones(1, 1, 5, 5), 2)
    assert even.shape[-2:] == (5, 5) and even[..., :4, :4].eq(1).all() and even[..., 4, :].eq(0).all()
    assert odd.shape[-2:] == (7, 7) and odd[..., 0, :].eq(0).all() and odd[..., 1:6, 1:6].eq(1).all()
    assert _keras_pad(torch.ones(1, 1, 4, 4), 1).shape[-2:] == (4, 4)


def test_bad_files_are_one_line_errors_naming_the_file(tmp_path):
    not_hdf5 = tmp_path / "broken.h5"
    not_hdf5.write_text("not an HDF5 file")
    with pytest.raises(ModelLoadError, match=r"broken\.h5: not a readable HDF5 file"):
        load_encoder(not_hdf5)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_group("model_weights/dense/dense")["kernel"] = torch.zeros(2, 2).numpy()
    with pytest.raises(ModelLoadError, match=r"other\.h5: no weights for Keras layer 'Conv1'") as error:
        load_encoder(other)
    assert "\n" not in str(error.value)
