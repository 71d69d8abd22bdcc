import pytest
import torch
from conftest import tiny_encoder
from safetensors.torch import load_file

from mudjacking.outputs import OutputError, atomic_output_dir, save_weight_delta, write_json


def test_failed_block_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(target) as staging:
            (staging / "half-written").write_text("x")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        with atomic_output_dir(target):
            pass
    assert (target / "old").read_text() == "keep me"
    with atomic_output_dir(target, overwrite=True) as staging:
        (staging / "new").write_text("fresh")
    assert sorted(p.name for p in target.iterdir()) == ["new"]


def test_json_handles_tensors_and_nan(tmp_path):
    write_json(tmp_path / "r.json", {"t": torch.tensor([1.5]), "nan": float("nan")})
    assert (tmp_path / "r.json").read_text().replace(" ", "").replace("\n", "") == '{"t":[1.5],"nan":null}'


def test_weight_delta_restores_the_patched_weights(tmp_path):
    original, patched = tiny_encoder(0), tiny_encoder(0)
    with torch.no_grad():
        patched.network.projection.weight.add_(0.5)
    assert save_weight_delta(original, patched, tmp_path / "d.safetensors") == 1
    delta = load_file(str(tmp_path / "d.safetensors"))
    restored = original.state_dict()["network.projection.weight"] + delta["network.projection.weight"]
    assert torch.allclose(restored, patched.state_dict()["network.projection.weight"])
