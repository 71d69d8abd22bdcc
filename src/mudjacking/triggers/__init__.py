"""Triggers: what an attacker stamps on inputs, and how Mudjacking recovers it from one bug report."""

from mudjacking.errors import TriggerNotFound
from mudjacking.triggers.pull import TriggerPull, measure_pull
from mudjacking.triggers.reverse import ReverseConfig, TriggerRecovery, reverse_engineer_trigger
from mudjacking.triggers.text import TextTriggerRecovery, reverse_engineer_text_trigger
from mudjacking.triggers.text_trigger import TextTrigger
from mudjacking.triggers.trigger import ImageTrigger

Trigger = ImageTrigger | TextTrigger
"""What ``x ⊕ t`` means for either modality: both have ``apply`` (evaluation) and ``stamp`` (training)."""

__all__ = [
    "ImageTrigger",
    "ReverseConfig",
    "TextTrigger",
    "TextTriggerRecovery",
    "Trigger",
    "TriggerNotFound",
    "TriggerPull",
    "TriggerRecovery",
    "measure_pull",
    "reverse_engineer_text_trigger",
    "reverse_engineer_trigger",
]
