"""One attacked deployment, ready to be defended: clean and backdoored models, the customers' classifiers on
every downstream task, a real bug report and the clean patching set.

Every defence starts from the same scenario, so their figures differ only by the defence. A setting
(:mod:`mudjacking.pipeline.settings`) builds the scenario; :mod:`mudjacking.pipeline.run` defends and scores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from mudjacking.attacks.badencoder import BadEncoderConfig
from mudjacking.attacks.registry import TriggerRequest, attack_named
from mudjacking.batches import input_shape, take
from mudjacking.data.bug_report import BugReport
from mudjacking.defences.registry import DefenceInputs
from mudjacking.encoders.base import Encoder
from mudjacking.evaluation.downstream import NoBugFound, deploy_probes, find_bug, target_label_of
from mudjacking.evaluation.probes import Probe
from mudjacking.timing import Laps
from mudjacking.triggers import Trigger

Inputs = Tensor | list[str]
SOURCE_TASK = ", source class "
"""In the name of a task scored on a source-specific backdoor's source class (reports judge that backdoor there)."""


@dataclass
class DownstreamTask:
    """One customer's task: its data, the classifiers it deployed on the backdoored model, and the class each of
    them gives the attacker's target embedding (the class ASR counts). ``trigger``: the backdoor whose ASR the task
    counts, when not the reported one (an attack with several backdoors scores each as a task of its own)."""

    name: str
    class_names: list[str]
    train: tuple[Inputs, Tensor]
    test: tuple[Inputs, Tensor]
    probes: dict[str, Probe] = field(default_factory=dict)
    targets: dict[str, int] = field(default_factory=dict)
    trigger: Trigger | None = None


@dataclass
class Scenario:
    """Args:
    modality: what the models read (``"image"``, ``"text"``), for reports.
    clean: the foundation model before the attack (for reference rows only; defences never see it).
    backdoored: the attacked model every defence starts from.
    true_trigger: the attacker's trigger (the oracle baseline and the scoring use it).
    bug: the customer's bug report, from the first task's test set; ``None`` when the attack failed (``no_bug``).
    patching_set: clean, unlabeled inputs D.
    tasks: downstream tasks by name; the first one is where the bug came from.
    attack: the attack's summary.
    laps: seconds per preparation step.
    about: what the setting was built from (data set, model path), for reports.
    """

    modality: str
    clean: Encoder
    backdoored: Encoder
    true_trigger: Trigger
    bug: BugReport | None
    patching_set: Inputs
    tasks: dict[str, DownstreamTask]
    attack: dict[str, Any]
    laps: Laps
    about: dict[str, Any] = field(default_factory=dict)
    no_bug: str | None = None  # why ``bug`` is None: no triggered test input is misclassified (the attack failed)

    def defence_inputs(self, recovered: Trigger) -> DefenceInputs:
        """What a defence may use: never the clean model or the customers' labels."""
        return DefenceInputs(self.backdoored, self.bug, self.patching_set, recovered, self.true_trigger)


@dataclass
class Deployment:
    """What every setting hands :func:`attack_and_deploy`: the clean model, the attacker's data and trigger, the
    customers' tasks and how the first one's bug is picked.

    Args:
        attack_kind: the registered attack (``mudjacking.attacks.registry``) that backdoors the clean model.
        attacker_targets: class per task fixed by the attacker's design (else: what each classifier gives the
            references' embedding).
        bug_caused_by_trigger: keep only bugs classified correctly without the trigger.
    """

    modality: str
    clean: Encoder
    shadow: Inputs
    references: Inputs
    true_trigger: Trigger
    patching_set: Inputs
    tasks: dict[str, DownstreamTask]
    attack: BadEncoderConfig
    probe_kinds: tuple[str, ...]
    seed: int
    attack_kind: str = "badencoder"
    attacker_targets: dict[str, int] = field(default_factory=dict)
    bug_caused_by_trigger: bool = True
    about: dict[str, Any] = field(default_factory=dict)


def deploy(
    setting: Any,
    modality: str,
    clean: Encoder,
    splits: dict[str, Any],
    own_trigger: Trigger,
    tasks: dict[str, DownstreamTask],
    **extra: Any,
) -> Deployment:
    """A setting's deployment: its attack (with the trigger the attack brings, else ``own_trigger``), classifiers
    and seed, over its data's ``shadow``, ``references`` and ``patching`` slices."""
    request = TriggerRequest(own_trigger, input_shape(splits["patching"]), setting.seed)
    trigger = attack_named(setting.attack_kind).trigger_for(request)
    return Deployment(
        modality, clean, splits["shadow"], splits["references"], trigger, splits["patching"], tasks, setting.attack,
        setting.probe_kinds, setting.seed, setting.attack_kind, **extra,
    )  # fmt: skip


def attack_and_deploy(deployment: Deployment, laps: Laps, show_progress: bool = True) -> Scenario:
    """Backdoors the clean model, deploys every customer's classifiers on it and finds a real bug in the first
    task: the steps every setting shares."""
    attack = attack_named(deployment.attack_kind).run(
        deployment.clean,
        deployment.shadow,
        deployment.references,
        deployment.true_trigger,
        deployment.attack,
        show_progress,
    )
    laps.lap("attack")
    kinds, seed = deployment.probe_kinds, deployment.seed
    for name, task in deployment.tasks.items():
        task.probes, task.targets = deploy_probes(attack.encoder, task.train, kinds, deployment.references, seed)
        if name in deployment.attacker_targets:
            task.targets = dict.fromkeys(kinds, deployment.attacker_targets[name])
    first = next(iter(deployment.tasks.values()))
    deployment.tasks |= {task.name: task for task in _attack_tasks(first, attack)}
    bug, no_bug = None, None
    try:
        bug = find_bug(
            attack.encoder,
            first.probes[kinds[0]],
            *first.test,
            deployment.true_trigger,
            first.targets[kinds[0]],
            first.class_names,
            seed,
            caused_by_trigger=deployment.bug_caused_by_trigger,
        )
    except NoBugFound as error:  # the attack failed: a suite records that as the attack's result
        no_bug = str(error)
    laps.lap("deploy_and_find_bug")
    return Scenario(
        deployment.modality,
        deployment.clean,
        attack.encoder,
        deployment.true_trigger,
        bug,
        deployment.patching_set,
        deployment.tasks,
        attack.summary(),
        laps,
        deployment.about,
        no_bug,
    )


def _attack_tasks(first: DownstreamTask, attack: Any) -> list[DownstreamTask]:
    """The first task scored again where the attack asks for it: for each backdoor past the first (its own trigger
    and target), and on a source-specific backdoor's source class."""
    tasks = []
    for number, (trigger, references) in enumerate(zip(attack.triggers, attack.references, strict=True)):
        if number:
            targets = {kind: target_label_of(attack.encoder, probe, references) for kind, probe in first.probes.items()}
            tasks.append(replace(first, name=f"{first.name}, backdoor {number + 1}", targets=targets, trigger=trigger))
    if attack.source is not None:
        tasks.append(_source_task(first, attack.encoder, attack.source))
    return tasks


def _source_task(task: DownstreamTask, encoder: Encoder, source: Inputs) -> DownstreamTask:
    """``task`` scored on the test inputs of a source-specific backdoor's source class only (the class the first
    deployed classifier gives most of the attacker's source inputs): the ASR that backdoor is built to reach."""
    probe = next(iter(task.probes.values()))
    label = int(torch.as_tensor(probe.predict(encoder.embed(source))).mode().values)
    inputs, labels = task.test
    keep = torch.nonzero(labels == label).flatten()
    test = (take(inputs, keep, torch.device("cpu")), labels[keep])
    return replace(task, name=f"{task.name}{SOURCE_TASK}{task.class_names[label]}", test=test)
