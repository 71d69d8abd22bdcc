"""Defences against a backdoored foundation model: Mudjacking and the baselines it is compared with, registered by
name with one budget rule (see :mod:`mudjacking.defences.registry`)."""

from mudjacking.defences.registry import (
    Budget,
    DefenceInputs,
    check_methods,
    register_defence,
    registered_defences,
    run_defences,
)

__all__ = ["Budget", "DefenceInputs", "check_methods", "register_defence", "registered_defences", "run_defences"]
