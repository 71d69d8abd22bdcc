"""Adapter for Hugging Face text encoders (BERT family, MiniLM, MPNet, RoBERTa) in a local directory.

Tokenisation (padding, truncation) and pooling happen inside, so the rest of the library sees
``list[str] -> Tensor[B, D]``. Pooling and normalisation follow the directory's sentence-transformers files
(``modules.json``, ``1_Pooling/config.json``) when present: mean or CLS pooling, then L2-normalise.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import Tensor, nn

from mudjacking.encoders.base import (
    ENCODER_CONFIG_FILE,
    Encoder,
    ModelLoadError,
    register_adapter,
    require_complete_weights,
    unwrap_output,
)
from mudjacking.errors import ConfigError
from mudjacking.jsonfiles import read_json_file

_TEXT_MODEL_TYPES = {
    "bert",
    "roberta",
    "xlm-roberta",
    "mpnet",
    "distilbert",
    "electra",
    "deberta",
    "deberta-v2",
    "albert",
    "modernbert",
}
# files a sentence-transformers directory carries beside the transformer, copied verbatim on save
_SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
POOLING_MODES = ("mean", "cls")
# architectures whose per-token output is the last layer's (no final norm after the layers), with their layers in
# ``encoder.layer``: their forward pass splits between any two layers (``HFTextEncoder.stages``)
_LAYERED_MODEL_TYPES = {"bert", "roberta", "xlm-roberta", "mpnet", "electra"}


@dataclass
class TokenStates:
    """A batch of sentences between two layers: token ids and attention mask ``[B, T]``, and the hidden states
    ``[B, T, H]`` the layers below gave (``None`` before the embeddings). Rows of different batches pad to the
    longer; padded positions are masked out, so they change nothing."""

    ids: Tensor
    mask: Tensor
    hidden: Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, rows: Tensor | slice) -> TokenStates:
        mask = self.mask[rows]
        length = max(int(mask.sum(1).max()), 1) if len(mask) else 1
        hidden = None if self.hidden is None else self.hidden[rows][:, :length]
        return TokenStates(self.ids[rows][:, :length], mask[:, :length], hidden)

    @staticmethod
    def cat(parts: Sequence[TokenStates]) -> TokenStates:
        length = max(part.ids.shape[1] for part in parts)

        def padded(tensor: Tensor) -> Tensor:
            return F.pad(tensor, (0, 0) * (tensor.ndim - 2) + (0, length - tensor.shape[1]))

        hidden = None if parts[0].hidden is None else torch.cat([padded(part.hidden) for part in parts])  # type: ignore[arg-type]
        return TokenStates(
            torch.cat([padded(part.ids) for part in parts]), torch.cat([padded(part.mask) for part in parts]), hidden
        )


def _model_type(path: Path) -> str | None:
    config_file = path / "config.json"
    if not config_file.exists():
        return None
    return read_json_file(config_file, ModelLoadError, "re-save the model with save_pretrained").get("model_type")


def _looks_like_text_model(path: Path) -> bool:
    return _model_type(path) in _TEXT_MODEL_TYPES


def sentence_transformers_pooling(path: Path) -> tuple[str, bool]:
    """(pooling mode, normalise?) from a sentence-transformers directory; ("mean", True) when it has none."""
    modules_file = path / "modules.json"
    if not modules_file.exists():
        return "mean", True
    modules = read_json_file(modules_file, ModelLoadError, "re-save the sentence-transformers model", list)
    modules = [module for module in modules if isinstance(module, dict)]
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    pooling = "mean"
    for module in modules:
        if str(module.get("type", "")).endswith("Pooling"):
            config_file = path / str(module.get("path", "1_Pooling")) / "config.json"
            if config_file.exists():
                config = read_json_file(config_file, ModelLoadError, "re-save the sentence-transformers model")
                if config.get("pooling_mode_cls_token"):
                    pooling = "cls"
                elif not config.get("pooling_mode_mean_tokens", True):
                    raise ModelLoadError(f"{config_file}: only mean or CLS pooling is supported; set one of them")
    return pooling, normalize


LENGTH_GROUP = 16
"""Sentences per forward call of a batch split by length (at least; see :func:`length_groups`). On MiniLM (2 CPU
cores) groups of 8, 12, 16 and 32 were within 5% of each other, and every one ~25% faster than one padded batch."""


def length_groups(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length and cut into groups of ``size`` (the last takes any remainder short
    of a group), so each group pads only to its own longest; one group, in order, when there are too few."""
    if len(lengths) < 2 * size:
        return [list(range(len(lengths)))]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    count = len(order) // size
    return [order[k * size : (k + 1) * size if k + 1 < count else len(order)] for k in range(count)]


@register_adapter("hf-text", can_load=_looks_like_text_model)
class HFTextEncoder(Encoder):
    """A ``transformers`` text model as an :class:`Encoder` of sentences.

    Args:
        model: the loaded base model (e.g. ``BertModel``).
        tokenizer: its tokenizer.
        pooling: ``"mean"`` over non-padding tokens, or ``"cls"``.
        normalize: L2-normalise the pooled embedding (as sentence-transformers models do).
        max_length: tokens kept per sentence (longer ones are truncated).
    """

    modality = "text"

    def __init__(
        self,
        model: transformers.PreTrainedModel,
        tokenizer: Any,
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 128,
        source: Path | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ConfigError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
        self.model, self.tokenizer = model, tokenizer
        self.pooling, self.normalize = pooling, normalize
        self.max_length = min(max_length, _position_limit(model) or max_length)
        self.source = source  # where sentence-transformers files are copied from on save

    def forward(self, texts: Sequence[str]) -> Tensor:
        """Embeds the sentences in groups of similar length on a CPU (rows in the input order): a batch drawn at
        random pads every sentence to its longest, and ~40% of a random batch of the patching set's movie-review
        snippets was padding. A sentence's embedding does not depend on its neighbours (padding is masked out).
        A patch step (65 MiniLM sentences, forward and backward, 2 cores) took 0.85 s instead of 1.13, and
        embedding 1,024 test snippets 2.9 s instead of 4.7."""
        if isinstance(texts, str):
            raise TypeError("pass a list of sentences, not one string")
        tokens = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        size = LENGTH_GROUP if self.device.type == "cpu" else len(texts)  # measured on CPU only
        groups = length_groups([len(ids) for ids in tokens["input_ids"]], size)
        pooled = []
        for group in groups:
            batch = self.tokenizer.pad({key: [values[i] for i in group] for key, values in tokens.items()},
                                       return_tensors="pt").to(self.device)  # fmt: skip
            pooled.append(self._pooled(unwrap_output_tokens(self.model(**batch)), batch["attention_mask"]))
        if len(groups) == 1:
            return pooled[0]
        order = torch.tensor([i for group in groups for i in group], device=pooled[0].device)
        return torch.cat(pooled).index_select(0, torch.argsort(order))

    def _pooled(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def stages(self) -> list[tuple[str, Callable[[Any], Any]]] | None:
        """Tokenising, the embeddings, each layer, and the pooling, passing :class:`TokenStates` between them, for
        the architectures that put nothing after their layers. A stage runs the model itself with the layers narrowed
        to its own and the embeddings' output replaced by the states below, so the model still builds its
        attention mask and (MPNet) its relative-position bias as in the whole pass."""
        layers = getattr(getattr(self.model, "encoder", None), "layer", None)
        if getattr(self.model.config, "model_type", None) not in _LAYERED_MODEL_TYPES or layers is None:
            return None
        return [
            ("", self._tokenized),
            ("model.embeddings", self._layer_stage(slice(0, 0))),
            *[(f"model.encoder.layer.{i}", self._layer_stage(slice(i, i + 1))) for i in range(len(layers))],
            ("", self._pooled_states),
        ]

    def _tokenized(self, texts: Sequence[str]) -> TokenStates:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        return TokenStates(batch["input_ids"], batch["attention_mask"])

    def split_at(self, first: int) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
        """Below ``first`` and the rest, each in one call of the model (a call per layer costs a GPU more than the
        cache saves); ``first`` counts as in :meth:`stages`: 0 tokenising, 1 the embeddings, 2 + i layer i."""
        stages = self.stages()
        if stages is None or not 2 <= first < len(stages) - 1:
            return super().split_at(first)
        below, above = self._layer_stage(slice(0, first - 2)), self._layer_stage(slice(first - 2, None))

        def lower(texts: Sequence[str]) -> TokenStates:
            return below(self._tokenized(texts))

        def upper(states: TokenStates) -> Tensor:
            return self._pooled_states(above(states))

        return lower, upper

    def _pooled_states(self, states: TokenStates) -> Tensor:
        return self._pooled(states.hidden, states.mask)  # type: ignore[arg-type]

    def _layer_stage(self, layers: slice) -> Callable[[TokenStates], TokenStates]:
        """The embeddings (``layers`` empty, no states yet) then the ``layers``, as a stage."""

        def run(states: TokenStates) -> TokenStates:
            with self._narrowed(layers, states.hidden):
                output = self.model(input_ids=states.ids, attention_mask=states.mask)
            return TokenStates(states.ids, states.mask, unwrap_output_tokens(output))

        return run

    @contextmanager
    def _narrowed(self, layers: slice, hidden: Tensor | None) -> Iterator[None]:
        """The model with only ``layers`` in its encoder and, given ``hidden``, that as the embeddings' output."""
        encoder = self.model.encoder
        every = encoder.layer
        encoder.layer = nn.ModuleList(list(every)[layers])
        hook = None
        if hidden is not None:
            hook = self.model.embeddings.register_forward_hook(lambda module, args, output: hidden.to(output.dtype))
        try:
            yield
        finally:
            encoder.layer = every
            if hook is not None:
                hook.remove()

    def input_embedding_rows(self, words: Sequence[str]) -> tuple[nn.Parameter, list[int]]:
        """The input-embedding matrix and the rows of the tokens ``words`` split into (special tokens excluded)."""
        ids = self.tokenizer(list(words), add_special_tokens=False)["input_ids"]
        return self.model.get_input_embeddings().weight, sorted({i for row in ids for i in row})

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        if self.source is not None:
            for name in _SENTENCE_TRANSFORMERS_FILES:
                if (self.source / name).exists():
                    shutil.copy2(self.source / name, directory / name)
            if (self.source / "1_Pooling").is_dir():
                shutil.copytree(self.source / "1_Pooling", directory / "1_Pooling", dirs_exist_ok=True)
        self._write_config(
            directory, {"pooling": self.pooling, "normalize": self.normalize, "max_length": self.max_length}
        )

    @classmethod
    def load(cls, directory: Path, max_length: int | None = None, **_: Any) -> HFTextEncoder:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
            model, loading = transformers.AutoModel.from_pretrained(
                directory, local_files_only=True, output_loading_info=True
            )
        except Exception as error:  # transformers raises many types for unreadable checkpoints
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ModelLoadError(f"{directory}: transformers could not load it ({first})") from error
        require_complete_weights(directory, loading, may_miss=("pooler.",))  # mean or CLS pooling reads no pooler
        native = directory / ENCODER_CONFIG_FILE
        if native.exists():
            saved = json.loads(native.read_text())
            pooling, normalize = saved.get("pooling", "mean"), saved.get("normalize", True)
            max_length = max_length or saved.get("max_length")
        else:
            pooling, normalize = sentence_transformers_pooling(directory)
        return cls(model.eval(), tokenizer, pooling, normalize, max_length or 128, directory)


def _position_limit(model: Any) -> int | None:
    """The most tokens the model has positions for: a sentence truncated at 128 tokens crashed a BERT built with 64
    position embeddings. RoBERTa-style models number positions after the padding index, which costs them two."""
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return None
    offset = 0
    if getattr(config, "model_type", None) in {"roberta", "xlm-roberta", "mpnet", "camembert"}:
        offset = (getattr(config, "pad_token_id", None) or 0) + 1
    return max(limit - offset, 1)


def unwrap_output_tokens(output: Any) -> Tensor:
    """The per-token hidden states ``[B, T, H]`` of a Hugging Face text model's output."""
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is None:
        hidden = output[0] if isinstance(output, (tuple, list)) else unwrap_output(output)
    return hidden


__all__ = ["HFTextEncoder", "TokenStates", "sentence_transformers_pooling"]
