"""One attacked deployment, ready to be defended: clean and backdoored models, the customers' classifiers on
every downstream task, a real bug report and the clean patching set.

Every defence in an experiment starts from the same scenario, so their figures differ only by the defence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mudjacking.attacks.badencoder import badencoder
from mudjacking.data.bug_report import BugReport
from mudjacking.data.builtin import LabeledImages, load_demo_images, load_digits_images
from mudjacking.demo import DemoConfig, clean_image_model
from mudjacking.demo import _splits as image_splits
from mudjacking.encoders.base import Encoder
from mudjacking.evaluation.downstream import deploy_probes, find_bug
from mudjacking.evaluation.probes import Probe
from mudjacking.text_demo import SENTIMENT, TextDemoConfig, load_text_setting
from mudjacking.timing import Laps
from mudjacking.triggers import Trigger
from mudjacking.triggers.trigger import ImageTrigger

Inputs = Tensor | list[str]


@dataclass
class DownstreamTask:
    """One customer's task: its data, the classifiers it deployed on the backdoored model, and the class each of
    them gives the attacker's target embedding (the class ASR counts)."""

    name: str
    class_names: list[str]
    train: tuple[Inputs, Tensor]
    test: tuple[Inputs, Tensor]
    probes: dict[str, Probe] = field(default_factory=dict)
    targets: dict[str, int] = field(default_factory=dict)


@dataclass
class Scenario:
    """Args:
    modality: ``"image"`` or ``"text"``.
    clean: the foundation model before the attack (for reference rows only; defences never see it).
    backdoored: the attacked model every defence starts from.
    true_trigger: the attacker's trigger (the oracle baseline and the scoring use it).
    bug: the customer's bug report, from the first task's test set.
    patching_set: clean, unlabeled inputs D.
    tasks: downstream tasks by name; the first one is where the bug came from.
    attack: the attack's summary.
    laps: seconds per preparation step.
    """

    modality: str
    clean: Encoder
    backdoored: Encoder
    true_trigger: Trigger
    bug: BugReport
    patching_set: Inputs
    tasks: dict[str, DownstreamTask]
    attack: dict[str, Any]
    laps: Laps


def _report_bug(backdoored: Encoder, task: DownstreamTask, trigger: Trigger, kind: str, seed: int) -> BugReport:
    return find_bug(
        backdoored,
        task.probes[kind],
        *task.test,
        trigger,
        task.targets[kind],
        task.class_names,
        seed,
        caused_by_trigger=True,
    )


def _image_task(data: LabeledImages, train: tuple[Tensor, Tensor], test_size: int) -> DownstreamTask:
    test = (data.test_images[:test_size], data.test_labels[:test_size])
    return DownstreamTask(data.name, list(data.class_names), train, test)


def prepare_image_scenario(config: DemoConfig, show_progress: bool = True, digits_task: bool = True) -> Scenario:
    """The image demo's deployment (SimCLR CNN on Fashion-MNIST, BadEncoder white square) with a second customer
    task: scikit-learn's digits, upsampled to the same size so the same trigger applies."""
    laps = Laps()
    torch.manual_seed(config.seed)
    data = load_demo_images()
    splits = image_splits(data, config)
    shape = tuple(data.train_images.shape[1:])
    trigger = ImageTrigger.square(shape, config.trigger_size)
    clean = clean_image_model(config, splits["pretraining"], show_progress)
    laps.lap("pretrain")
    attack = badencoder(clean, splits["shadow"], splits["references"], trigger, config.attack, show_progress)
    laps.lap("attack")
    tasks = {data.name: _image_task(data, splits["train"], config.test_size)}
    if digits_task:
        digits = load_digits_images(config.seed, size=shape[1:])
        tasks[digits.name] = _image_task(digits, (digits.train_images, digits.train_labels), config.test_size)
    for task in tasks.values():
        task.probes, task.targets = deploy_probes(
            attack.encoder, task.train, config.probe_kinds, splits["references"], config.seed
        )
    first = next(iter(tasks.values()))
    first.targets = dict.fromkeys(config.probe_kinds, config.target_label)  # the attacker's class, by design
    bug = _report_bug(attack.encoder, first, trigger, config.probe_kinds[0], config.seed)
    laps.lap("deploy_and_find_bug")
    return Scenario("image", clean, attack.encoder, trigger, bug, splits["patching"], tasks, attack.summary(), laps)


def prepare_text_scenario(config: TextDemoConfig, show_progress: bool = True) -> Scenario:
    """The text demo's deployment: backdoored all-MiniLM-L6-v2, movie-review sentiment and BBC News customers."""
    laps = Laps()
    torch.manual_seed(config.seed)
    _, clean, labeled, splits, trigger = load_text_setting(config)
    attack = badencoder(clean, splits["shadow"], splits["references"], trigger, config.attack, show_progress)
    laps.lap("attack")
    tasks = {
        name: DownstreamTask(name, list(task.class_names), splits["train"][name], splits["test"][name])
        for name, task in labeled.items()
    }
    for task in tasks.values():
        task.probes, task.targets = deploy_probes(
            attack.encoder, task.train, config.probe_kinds, splits["references"], config.seed
        )
    bug = _report_bug(attack.encoder, tasks[SENTIMENT], trigger, config.probe_kinds[0], config.seed)
    laps.lap("deploy_and_find_bug")
    return Scenario("text", clean, attack.encoder, trigger, bug, splits["patching"], tasks, attack.summary(), laps)
