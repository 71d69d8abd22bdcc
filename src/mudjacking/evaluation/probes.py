"""Downstream classifiers trained on frozen, L2-normalised embeddings.

``linear``: scikit-learn logistic regression. ``mlp``: the paper's fully connected classifier
(in → 512 → 256 → C, ReLU, dropout 0.5), trained with Adam.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

from mudjacking.errors import ConfigError

_PROBES: dict[str, Callable[..., Probe]] = {}


def register_probe(name: str) -> Callable[[type[Probe]], type[Probe]]:
    def decorate(cls: type[Probe]) -> type[Probe]:
        _PROBES[name] = cls
        cls.name = name
        return cls

    return decorate


def make_probe(kind: str, seed: int = 0) -> Probe:
    if kind not in _PROBES:
        raise ConfigError(f"unknown probe {kind!r}; known: {', '.join(sorted(_PROBES))}")
    return _PROBES[kind](seed=seed)


class Probe:
    """A downstream classifier: ``fit(embeddings [N, D], labels [N])``, ``predict(embeddings) -> [N]``."""

    name = ""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, embeddings: Tensor, labels: Tensor) -> Probe:
        raise NotImplementedError

    def predict(self, embeddings: Tensor) -> Tensor:
        raise NotImplementedError


@register_probe("linear")
class LinearProbe(Probe):
    def fit(self, embeddings: Tensor, labels: Tensor) -> LinearProbe:
        self.model = LogisticRegression(max_iter=500, C=10.0, random_state=self.seed)
        self.model.fit(F.normalize(embeddings, dim=-1).numpy(), labels.numpy())
        return self

    def predict(self, embeddings: Tensor) -> Tensor:
        return torch.from_numpy(self.model.predict(F.normalize(embeddings, dim=-1).numpy()).astype(np.int64))


@register_probe("mlp")
class MLPProbe(Probe):
    """The paper's downstream classifier; ``epochs`` of Adam at ``lr`` on batches of ``batch_size``."""

    def __init__(self, seed: int = 0, epochs: int = 20, lr: float = 2e-3, batch_size: int = 256) -> None:
        super().__init__(seed)
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size

    def fit(self, embeddings: Tensor, labels: Tensor) -> MLPProbe:
        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        classes = int(labels.max()) + 1
        self.model = nn.Sequential(
            nn.Linear(embeddings.shape[1], 512),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(256, classes),
        )
        inputs = F.normalize(embeddings, dim=-1)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        self.model.train()
        for _ in range(self.epochs):
            for index in torch.randperm(len(inputs), generator=generator).split(self.batch_size):
                loss = F.cross_entropy(self.model(inputs[index]), labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        self.model.eval()
        return self

    def predict(self, embeddings: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(F.normalize(embeddings, dim=-1)).argmax(-1)
