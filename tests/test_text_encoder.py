"""The text adapter on a tiny randomly initialised BERT with a hand-written vocabulary (no downloads)."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest
import torch
import transformers
from hypothesis import given
from hypothesis import strategies as st

from mudjacking.encoders import HFTextEncoder, hf_text, load_encoder
from mudjacking.encoders.hf_text import length_groups

WORDS = "the a cat dog sat ran on under mat rug good bad movie film plot cf mn bb".split()


def tiny_bert_dir(tmp_path: Path, pooling: str | None = None) -> Path:
    directory = tmp_path / "bert"
    directory.mkdir()
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = transformers.BertTokenizerFast(vocab={word: index for index, word in enumerate(vocabulary)})
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if pooling is not None:
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        (directory / "modules.json").write_text(json.dumps(modules))
        (directory / "1_Pooling").mkdir()
        (directory / "1_Pooling" / "config.json").write_text(
            json.dumps({"pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean"})
        )
    return directory


def test_contract(tmp_path):
    encoder = load_encoder(tiny_bert_dir(tmp_path))
    assert isinstance(encoder, HFTextEncoder) and encoder.modality == "text"
    sentences = ["the cat sat on the mat", "a good movie", "bad plot cf"]
    embeddings = encoder.embed(sentences, batch_size=2)
    assert embeddings.shape == (3, 32)
    assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert (embeddings < 0).any()
    assert encoder.tokenizer.unk_token_id not in encoder.tokenizer(sentences)["input_ids"][0]
    assert torch.allclose(embeddings, encoder.embed(sentences), atol=1e-5)  # other batches, other padding
    encoder(sentences).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    out = tmp_path / "resaved"
    out.mkdir()
    encoder.save(out)
    assert torch.allclose(load_encoder(out).embed(sentences), embeddings, atol=1e-5)


def test_mean_pooling_ignores_padding(tmp_path):
    encoder = load_encoder(tiny_bert_dir(tmp_path))
    alone = encoder.embed(["a good movie"])
    padded = encoder.embed(["a good movie", "the dog ran under the rug on the mat"])[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_pooling_follows_sentence_transformers_files(tmp_path):
    encoder = load_encoder(tiny_bert_dir(tmp_path, pooling="cls"))
    assert (encoder.pooling, encoder.normalize) == ("cls", False)
    out = tmp_path / "resaved"
    out.mkdir()
    encoder.save(out)
    assert (out / "1_Pooling" / "config.json").exists() and (out / "modules.json").exists()
    assert load_encoder(out).pooling == "cls"


def test_a_single_string_is_refused(tmp_path):
    with pytest.raises(TypeError, match="list of sentences"):
        load_encoder(tiny_bert_dir(tmp_path))("one string")


def test_sentences_are_embedded_by_length_and_returned_in_order(tmp_path):
    encoder = load_encoder(tiny_bert_dir(tmp_path))
    sentences = ["the dog ran under the rug on the mat", "a", "good movie", "the cat sat on the mat"]
    together = encoder.embed(sentences, batch_size=2)
    one_by_one = torch.cat([encoder.embed([s]) for s in sentences])
    assert torch.allclose(together, one_by_one, atol=1e-5)


@given(st.lists(st.integers(1, 48), max_size=80), st.integers(1, 20))
def test_length_groups_cover_every_row_once_and_each_group_is_shorter_than_the_next(lengths, size):
    groups = length_groups(lengths, size)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    if len(lengths) < 2 * size:
        assert groups == [list(range(len(lengths)))]
        return
    assert all(size <= len(group) < 2 * size for group in groups)
    assert all(max(lengths[i] for i in a) <= min(lengths[i] for i in b) for a, b in pairwise(groups))


def test_a_batch_split_by_length_gives_each_sentences_own_embedding_and_gradient(tmp_path, monkeypatch):
    encoder = load_encoder(tiny_bert_dir(tmp_path))
    words = WORDS * 3
    sentences = [" ".join(words[i : i + 1 + (7 * i) % 23]) for i in range(40)]  # 1-23 words, lengths shuffled
    assert len(length_groups([len(s.split()) for s in sentences], hf_text.LENGTH_GROUP)) > 1
    split = encoder(sentences)
    split[::3].sum().backward()
    split_grads = [p.grad.clone() for p in encoder.parameters() if p.grad is not None]
    encoder.zero_grad()
    monkeypatch.setattr(hf_text, "LENGTH_GROUP", len(sentences))  # one padded batch
    whole = encoder(sentences)
    whole[::3].sum().backward()
    whole_grads = [p.grad for p in encoder.parameters() if p.grad is not None]
    assert torch.allclose(split, whole, atol=1e-5)
    assert not torch.allclose(split[0], split[1], atol=1e-3)  # rows not shuffled into one another
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(split_grads, whole_grads, strict=True))


def test_a_text_checkpoint_missing_layers_is_refused_but_a_missing_pooler_is_not(tmp_path):
    from mudjacking.encoders import ModelLoadError

    directory = tiny_bert_dir(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config_file = directory / "config.json"
    model = transformers.BertModel(transformers.BertConfig.from_pretrained(directory), add_pooling_layer=False)
    model.save_pretrained(directory)  # no pooler: mean pooling never reads it
    assert load_encoder(directory).pooling == "mean"
    config_file.write_text(json.dumps({**config, "num_hidden_layers": 2}))
    with pytest.raises(ModelLoadError, match=r"2 missing|missing: encoder\.layer\.1"):
        load_encoder(directory)
