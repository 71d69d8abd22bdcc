import pytest
import torch
from conftest import tiny_encoder
from safetensors.torch import load_file

from mudjacking.outputs import OutputError, atomic_output_dir, environment_info, save_weight_delta, write_json


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


def test_a_delta_applies_bit_for_bit_even_where_float_addition_would_round(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mudjacking.outputs import REPLACED, apply_weight_delta, weights_sha256

    @given(st.floats(1e-8, 1e3), st.integers(0, 2**31 - 1))
    @settings(max_examples=25, deadline=None)
    def case(scale: float, seed: int) -> None:
        original, patched = tiny_encoder(0), tiny_encoder(0)
        noise = torch.randn(patched.network.projection.weight.shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            patched.network.projection.weight.add_(scale * noise)
            patched.network.body[0].weight.mul_(1 + scale)
        path = tmp_path / f"{seed}.safetensors"
        save_weight_delta(original, patched, path)
        rebuilt = apply_weight_delta(original, path)
        assert weights_sha256(rebuilt) == weights_sha256(patched)
        pairs = zip(rebuilt.state_dict().values(), patched.state_dict().values(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)

    case()
    # a difference that cannot round back is stored whole
    original, patched = tiny_encoder(0), tiny_encoder(0)
    with torch.no_grad():
        original.network.projection.bias[0] = 1.0
        patched.network.projection.bias[0] = 1e-8  # 1e-8 - 1 rounds to -1 in float32, and 1 + (-1) is 0
    save_weight_delta(original, patched, tmp_path / "whole.safetensors")
    stored = load_file(str(tmp_path / "whole.safetensors"))
    assert set(stored) == {REPLACED + "network.projection.bias"}
    assert torch.equal(apply_weight_delta(original, tmp_path / "whole.safetensors").network.projection.bias,
                       patched.network.projection.bias)  # fmt: skip


def test_a_delta_without_hashes_is_refused(tmp_path):
    from safetensors.torch import save_file

    from mudjacking.errors import DataError
    from mudjacking.outputs import apply_weight_delta

    save_file({"network.projection.bias": torch.zeros(64)}, str(tmp_path / "old.safetensors"),
              metadata={"format": "mudjacking-weight-delta/1"})  # fmt: skip
    with pytest.raises(DataError, match="old.safetensors: format"):
        apply_weight_delta(tiny_encoder(0), tmp_path / "old.safetensors")


def test_environment_names_the_cpu_instruction_set_and_any_cap(monkeypatch):
    """The same seeds give other figures on AVX-512 than on AVX2 kernels, so every result says which ran."""
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    cpu = environment_info()["cpu"]
    assert cpu["capability"] == torch.backends.cpu.get_cpu_capability() and cpu["capability"]
    assert cpu["caps"]["ATEN_CPU_CAPABILITY"] == "avx2" and "MKL_ENABLE_INSTRUCTIONS" not in cpu["caps"]
    assert cpu["model"]
