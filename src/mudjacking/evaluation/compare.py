"""Several models side by side on one downstream task: the classifier customers deployed, applied unchanged to each
model, and (where asked) one retrained on each model's own embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from torch import Tensor

from mudjacking.data.bug_report import BugReport
from mudjacking.encoders.base import Encoder
from mudjacking.evaluation.downstream import EmbeddingCache, attacked_rows, embed_task, score_probe
from mudjacking.evaluation.probes import Probe, make_probe
from mudjacking.triggers import Trigger

Inputs = Tensor | list[str]


def evaluate_models(
    models: dict[str, Encoder],
    train: tuple[Inputs, Tensor],
    test: tuple[Inputs, Tensor],
    trigger: Trigger,
    target_label: int | Mapping[str, int],
    bug: BugReport | None = None,
    probe_kinds: tuple[str, ...] = ("linear",),
    deployed_on: str | None = None,
    seed: int = 0,
    retrain: tuple[str, ...] | None = None,
    deployed_probes: Mapping[str, Probe] | None = None,
    cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """Scores every model with downstream classifiers of each kind.

    ``retrained``: a classifier trained on that model's own embeddings. ``deployed``: the classifier trained on
    ``models[deployed_on]`` (the one customers already run) applied unchanged, which is what locality protects.
    ``retrain`` limits the retrained classifiers to the named models (``None``: all), since each costs a fit and
    the embedding of the training set. ``target_label`` may differ per classifier kind (a mapping kind -> label).
    ``deployed_probes`` (kind -> fitted classifier) reuses classifiers already trained on ``models[deployed_on]``.
    ``cache`` shares the clean sets' embeddings with other calls on the same inputs.
    """

    def needs_train(name: str) -> bool:
        return (name == deployed_on and not deployed_probes) or retrain is None or name in retrain

    targets = [target_label[kind] for kind in probe_kinds] if isinstance(target_label, Mapping) else target_label
    attacked = attacked_rows(test[1], targets)
    embedded = {
        name: embed_task(encoder, train[0] if needs_train(name) else None, test[0], trigger, bug, cache, attacked)
        for name, encoder in models.items()
    }
    bug_label = None if bug is None else bug.label
    results: dict[str, Any] = {}
    for kind in probe_kinds:
        target = target_label[kind] if isinstance(target_label, Mapping) else target_label
        if deployed_probes:
            deployed = deployed_probes[kind]
        else:
            deployed = make_probe(kind, seed).fit(embedded[deployed_on].train, train[1]) if deployed_on else None
        for name, task in embedded.items():
            entry = {}
            if retrain is None or name in retrain:
                retrained = make_probe(kind, seed).fit(task.train, train[1])
                entry["retrained"] = asdict(score_probe(retrained, task, test[1], target, bug_label))
            if deployed is not None:
                entry["deployed"] = asdict(score_probe(deployed, task, test[1], target, bug_label))
            results.setdefault(kind, {})[name] = entry
    return results


def control_flip_rates(
    models: dict[str, Encoder],
    test: tuple[Inputs, Tensor],
    control: Trigger,
    probes: Mapping[str, Probe],
    targets: Mapping[str, int],
    cache: EmbeddingCache | None = None,
) -> dict[str, dict[str, float]]:
    """Flip rate per model and classifier when an ordinary stamp (a common word) replaces the trigger: the floor a
    removed trigger's flip rate can reach, since stamping *anything* flips some predictions."""
    rates: dict[str, dict[str, float]] = {}
    attacked = attacked_rows(test[1], [targets[kind] for kind in probes])
    for name, encoder in models.items():
        embedded = embed_task(encoder, None, test[0], control, cache=cache, attacked=attacked)
        for kind, probe in probes.items():
            rates.setdefault(name, {})[kind] = score_probe(probe, embedded, test[1], targets[kind]).flip_rate
    return rates
