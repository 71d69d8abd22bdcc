"""Which blocks a sharded patch shards, and what it refuses (no processes started: see test_distributed)."""

from __future__ import annotations

import pytest
import torch
import transformers
from conftest import tiny_encoder

from mudjacking.errors import ConfigError
from mudjacking.patching import PatchConfig, patch_encoder
from mudjacking.sharding import shard_units, sharding_asked


def test_hugging_face_models_are_sharded_by_the_blocks_they_name():
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3,
                                    num_attention_heads=2, intermediate_size=64)  # fmt: skip
    model = transformers.ViTModel(config, add_pooling_layer=False)
    names = [type(unit).__name__ for unit in shard_units(model)]
    assert names.count("ViTLayer") == 3
    assert set(names) <= set(model._no_split_modules)


def test_other_networks_are_sharded_by_subtrees_of_a_least_size():
    network = tiny_encoder()
    units = shard_units(network, min_parameters=5_000)
    assert len(units) >= 2, "one unit or none: the weights would be gathered whole in one piece"
    managed: set[int] = set()
    for unit in units:  # lowest first: a unit shards what no unit below it took, and that is never too little
        own = [p for p in unit.parameters() if id(p) not in managed]
        assert sum(p.numel() for p in own) >= 5_000
        managed |= {id(p) for p in own}
    assert network not in units  # the root is sharded last, by the caller


@pytest.fixture()
def fsdp_launch(monkeypatch):
    """The environment `accelerate launch --use_fsdp` gives each process."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert sharding_asked()


@pytest.mark.parametrize("options", [{"lora_rank": 2}, {"trigger_tokens_only": True}])
def test_a_sharded_patch_refuses_what_it_cannot_shard(fsdp_launch, backdoored, options):
    with pytest.raises(ConfigError, match="--use_fsdp"):
        patch_encoder(backdoored.encoder, backdoored.bug, backdoored.trigger, backdoored.patching_set[:64],
                      PatchConfig(max_epochs=1, **options), show_progress=False)  # fmt: skip


def test_no_launch_asks_for_no_sharding(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert not sharding_asked()  # a leftover variable outside a launch changes nothing
    assert torch.distributed.is_available()
