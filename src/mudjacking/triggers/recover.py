"""Trigger recovery per modality, registered: each modality names its settings, its recovery and its trigger file,
so the patch pipeline asks for ``RECOVERERS[modality]`` and never branches on what the model reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from torch import Tensor

from mudjacking.data.bug_report import BugReport
from mudjacking.encoders.base import Encoder
from mudjacking.errors import ConfigError, DataError
from mudjacking.triggers.reverse import ReverseConfig, TriggerRecovery, reverse_engineer_trigger
from mudjacking.triggers.text import TextReverseConfig, TextTriggerRecovery, reverse_engineer_text_trigger
from mudjacking.triggers.text_trigger import TextTrigger
from mudjacking.triggers.trigger import ImageTrigger

RecoverySettings = ReverseConfig | TextReverseConfig | Mapping[str, Any] | None


@dataclass(frozen=True)
class Recoverer:
    """How one modality's trigger is recovered and stored.

    Attributes:
        settings: the recovery's config class.
        recover: ``(encoder, bug, inputs, config, force, show_progress) -> recovery``.
        trigger_suffix: the file suffix of this modality's trigger files.
        trigger_file: what such a file is called in an error message.
        load: reads such a file.
    """

    settings: type
    recover: Callable[..., Any]
    trigger_suffix: str
    trigger_file: str
    load: Callable[[Path], Any]


def _recover_text(encoder: Encoder, bug: BugReport, inputs: Any, config: Any, force: bool, _: bool) -> Any:
    return reverse_engineer_text_trigger(encoder, bug, list(inputs), config, force)


RECOVERERS: dict[str, Recoverer] = {
    "image": Recoverer(ReverseConfig, reverse_engineer_trigger, ".npz", "trigger npz", ImageTrigger.load),
    "text": Recoverer(TextReverseConfig, _recover_text, ".json", "text trigger JSON", TextTrigger.load),
}


def recoverer(modality: str) -> Recoverer:
    if modality not in RECOVERERS:
        raise ConfigError(f"no trigger recovery for {modality!r} models; known: {', '.join(sorted(RECOVERERS))}")
    return RECOVERERS[modality]


def reverse_config_for(modality: str, settings: RecoverySettings = None) -> Any:
    """The recovery settings of ``modality``: ``settings`` itself when it is a config, else the defaults with the
    mapping's fields changed (``None`` values ignored; a field of another modality's recovery is an error)."""
    kind = recoverer(modality).settings
    if isinstance(settings, tuple(r.settings for r in RECOVERERS.values())):
        return settings
    names = {f.name for f in fields(kind)}
    given = {key: value for key, value in (settings or {}).items() if value is not None}
    wrong = sorted(set(given) - names)
    if wrong:
        raise ConfigError(f"{', '.join(wrong)} do not apply to trigger recovery on {modality} models")
    return kind(**given)


def recover_trigger(
    encoder: Encoder,
    bug: BugReport,
    patching_set: Tensor | list[str],
    config: RecoverySettings = None,
    force: bool = False,
    show_progress: bool = False,
) -> TriggerRecovery | TextTriggerRecovery:
    """Reverse-engineers and verifies the trigger of ``bug`` for the encoder's modality (raises ``TriggerNotFound``)."""
    config = reverse_config_for(encoder.modality, config)
    return recoverer(encoder.modality).recover(encoder, bug, patching_set, config, force, show_progress)


# the trigger an attack stamps when the user names none: (shadow inputs, square side, words, seed) -> trigger
ATTACK_TRIGGERS: dict[str, Callable[[Any, int, tuple[str, ...], int], ImageTrigger | TextTrigger]] = {
    "image": lambda inputs, size, _, __: ImageTrigger.square(tuple(inputs.shape[1:]), size),
    "text": lambda _, __, words, seed: TextTrigger(list(words), seed=seed),
}


def attack_trigger(
    modality: str, inputs: Any, size: int, words: tuple[str, ...], seed: int
) -> ImageTrigger | TextTrigger:
    """The default trigger of an attack on ``modality`` models: a white square of side ``size`` in the corner for
    images, ``words`` inserted at random positions for text."""
    recoverer(modality)  # an unknown modality is refused in one line
    return ATTACK_TRIGGERS[modality](inputs, size, words, seed)


def load_trigger(path: str | Path, modality: str) -> ImageTrigger | TextTrigger:
    """A trigger file of ``modality`` (text: ``trigger.json``; images: npz), refused in one line if it is another's."""
    path = Path(path)
    expected = recoverer(modality)
    if path.suffix != expected.trigger_suffix:
        raise DataError(
            f"{path}: a {modality} model needs a {expected.trigger_file} (as written by reverse-trigger); a trigger "
            "of another modality cannot be stamped on its inputs"
        )
    return expected.load(path)
