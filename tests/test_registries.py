"""Modality registries: loaders and trigger recoverers are looked up by the model's modality, so a new modality is
one registration and code above the data and trigger layers never branches on it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mudjacking.data.loaders import UNLABELED, load_inputs
from mudjacking.errors import ConfigError, DataError
from mudjacking.triggers import recover


def test_an_unknown_modality_is_a_one_line_data_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match=r"inputs\.wav: no loader for 'audio' inputs; known: image, text"):
        load_inputs(tmp_path / "inputs.wav", "audio")


def test_a_registered_modality_is_loaded_and_recovered_without_any_other_change(monkeypatch, tmp_path):
    calls = []

    def recover_toy(encoder, bug, inputs, config, force, show_progress):
        calls.append((inputs, config.strength, force))
        return "recovered"

    toy = recover.Recoverer(SimpleNamespace, recover_toy, ".toy", "toy trigger", lambda path: path.name)
    monkeypatch.setitem(recover.RECOVERERS, "toy", toy)
    monkeypatch.setitem(UNLABELED, "toy", lambda path: ["a", "b"])
    inputs = load_inputs(tmp_path / "x", "toy")
    encoder = SimpleNamespace(modality="toy")
    result = recover.recover_trigger(encoder, None, inputs, SimpleNamespace(strength=2), force=True)
    assert result == "recovered" and calls == [(["a", "b"], 2, True)]
    assert recover.load_trigger(tmp_path / "t.toy", "toy") == "t.toy"


def test_a_trigger_file_of_another_modality_is_refused():
    with pytest.raises(DataError, match="needs a trigger npz"):
        recover.load_trigger("trigger.json", "image")
    with pytest.raises(ConfigError, match="no trigger recovery for 'audio'"):
        recover.recover_trigger(SimpleNamespace(modality="audio"), None, [])


def test_recovery_options_of_the_other_modality_are_refused():
    with pytest.raises(ConfigError, match="windows do not apply to trigger recovery on text models"):
        recover.reverse_config_for("text", {"windows": (3,)})
    assert recover.reverse_config_for("image", {"windows": (5,), "stride": None}).windows == (5,)
