"""File-to-file workflows behind the CLI: load inputs, call the library, write every output atomically.

Each function takes paths and typed configs and returns the report it wrote, so the CLI stays a thin parser and
the same runs can be scripted from Python.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import Tensor

from mudjacking.attacks.badencoder import BadEncoderConfig
from mudjacking.attacks.registry import TriggerRequest, attack_named
from mudjacking.batches import input_shape
from mudjacking.checkpoints import PatchCheckpoints, checkpoint_folder, fingerprint
from mudjacking.checks import BugVisibility, inspect_bug, require_backdoor_signature, require_visible
from mudjacking.data.bug_report import BugReport, check_modality, check_same_size, load_bug_report
from mudjacking.data.loaders import load_inputs, load_labeled
from mudjacking.encoders.base import Encoder, load_encoder, require_modality
from mudjacking.errors import CheckFailed, ConfigError
from mudjacking.evaluation.compare import evaluate_models
from mudjacking.fixed_bugs import read_fixed_bugs, write_fixed_bugs
from mudjacking.geometry import EmbeddingGeometry
from mudjacking.memory import require_memory
from mudjacking.outputs import (
    apply_weight_delta,
    atomic_output_dir,
    environment_info,
    main_process_output_dir,
    weights_sha256,
    write_json,
)
from mudjacking.patching import PatchConfig, patch_encoder, verify_patch
from mudjacking.recipes import adapt_recipe, recipe_for
from mudjacking.report.artifacts import MODEL_DIR, save_patched, write_recovery
from mudjacking.report.plots import plot_before_after
from mudjacking.triggers import Trigger
from mudjacking.triggers.recover import (
    RecoverySettings,
    attack_trigger,
    load_trigger,
    recover_trigger,
    reverse_config_for,
)


def _checked_bug(
    encoder: Encoder, bug: BugReport, patching_set: Tensor | list[str], where: str | Path, force: bool
) -> tuple[EmbeddingGeometry, BugVisibility]:
    """The bug must show in the model as loaded; refuses (``CheckFailed``) unless ``force``."""
    geometry, visibility = inspect_bug(encoder, bug, patching_set)
    if not force:
        require_visible(visibility, str(where))
    return geometry, visibility


def _read_case(
    model: str | Path,
    bug: str | Path,
    data: str | Path,
    allow_pickle: bool,
    image_mean: list[float] | None,
    image_std: list[float] | None,
) -> tuple[Encoder, BugReport, Tensor | list[str]]:
    """The model, the bug report and the clean inputs, each checked against the others (modality, image size)."""
    encoder = load_encoder(model, allow_pickle=allow_pickle, image_mean=image_mean, image_std=image_std)
    patching_set = load_inputs(data, encoder.modality)
    return encoder, _read_bug(bug, encoder, patching_set, data), patching_set


def _read_bug(path: str | Path, encoder: Encoder, inputs: Tensor | list[str], data: str | Path) -> BugReport:
    """A bug report, checked against the model (modality) and the clean inputs (image size)."""
    report_bug = load_bug_report(path)
    check_modality(report_bug, encoder.modality, source=path)
    check_same_size(report_bug, inputs, path, data)
    return report_bug


def reverse_trigger_files(
    model: str | Path,
    bug: str | Path,
    data: str | Path,
    out: str | Path,
    config: RecoverySettings = None,
    true_trigger: str | Path | None = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
    force: bool = False,
    image_mean: list[float] | None = None,
    image_std: list[float] | None = None,
) -> dict[str, Any]:
    """``mudjacking reverse-trigger``: model + bug report + clean data -> trigger file, picture and ``recovery.json``.

    Refuses (``CheckFailed``, nothing written) when the model does not show the bug, no candidate verifies or the
    trigger lands too few clean inputs at ``h(x_b)`` (no backdoor's signature), unless ``force``.
    """
    encoder, report_bug, patching_set = _read_case(model, bug, data, allow_pickle, image_mean, image_std)
    truth = load_trigger(true_trigger, encoder.modality) if true_trigger else None
    config = reverse_config_for(encoder.modality, config)
    _, visibility = _checked_bug(encoder, report_bug, patching_set, bug, force)
    recovery = _recovered(encoder, report_bug, bug, patching_set, config, force, True, 1)
    with atomic_output_dir(out, overwrite, inputs=(model, bug, data, true_trigger)) as staging:
        summary = {
            "config": asdict(config),
            "bug_visibility": visibility.summary(),
            **write_recovery(staging, recovery, report_bug, truth),
        }
        write_json(staging / "recovery.json", summary)
    return summary


def patch_files(
    model: str | Path,
    bug: str | Path | Sequence[str | Path],
    data: str | Path,
    out: str | Path,
    trigger: str | Path | None = None,
    patch_config: PatchConfig | None = None,
    reverse_config: RecoverySettings = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    patch_options: Mapping[str, Any] | None = None,
    force: bool = False,
    image_mean: list[float] | None = None,
    image_std: list[float] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """``mudjacking patch``: a user's model directory, bug report(s) and patching-set folder -> ``out`` with the
    patched model (same format, safetensors), the weight delta, the trigger(s), pictures and ``report.json``.

    Every step checks itself before anything is written: each bug must show in the model as loaded, and each
    recovered trigger must drag clean inputs toward its ``h(x_b)``; otherwise ``CheckFailed`` (``force`` overrides,
    and the report says so). The input model is only read. ``trigger`` skips reverse-engineering (one bug only).

    Several bug reports are fixed in one patch: the same trigger recovered twice counts once. Bugs an earlier patch
    fixed (the model folder's ``fixed_bugs/``) join as regression cases; ``out/model/fixed_bugs/`` keeps them and
    every new bug this patch fixed, and the report gives each one's state after the patch.

    Args:
        patch_config: the whole patch configuration; by default the modality's recipe (:mod:`mudjacking.recipes`)
            with ``patch_options`` (``PatchConfig`` fields) changed.
        force: go on past a failed self-check (a bug the model does not show, a trigger that does not verify).
        resume: continue from the checkpoint an interrupted run into ``out`` left (``.OUT.checkpoint`` beside it);
            without it a run starts afresh. Checkpoints are written after every pass and removed once ``out`` is.

    Returns:
        the report; ``report["patch"]["goals_met"]`` says whether the held-out goals were met for every bug.
    """
    bug_paths = [bug] if isinstance(bug, (str, Path)) else list(bug)
    if not bug_paths:
        raise ConfigError("no bug report given: name at least one with --bug")
    if trigger and len(bug_paths) > 1:
        raise ConfigError("--trigger gives one bug's trigger; with several --bug reports each trigger is recovered")
    encoder = load_encoder(model, allow_pickle=allow_pickle, image_mean=image_mean, image_std=image_std)
    patching_set = load_inputs(data, encoder.modality)
    bugs = [_read_bug(path, encoder, patching_set, data) for path in bug_paths]
    earlier = read_fixed_bugs(model, encoder.modality)
    for earlier_bug, _, folder in earlier:
        check_same_size(earlier_bug, patching_set, folder, data)
    known_trigger = load_trigger(trigger, encoder.modality) if trigger else None
    options = dict(patch_options or {})
    config = patch_config or recipe_for(encoder, **options)
    checked = [_checked_bug(encoder, one, patching_set, path, force) for one, path in zip(bugs, bug_paths, strict=True)]
    report: dict[str, Any] = {
        "inputs": {"model": str(model), "bug": _one_or_list(bug_paths), "data": str(data)},
        "bug": bugs[0].summary(),
        "patching_set_size": len(patching_set),
        "recipe": "given" if patch_config else f"{encoder.modality} defaults" + (" + options" if patch_options else ""),
        "geometry": checked[0][0].summary(),
        "bug_visibility": _one_or_list([visibility.summary() for _, visibility in checked]),
        "forced": force,
    }
    recoveries: list[Any] = []
    triggers: list[Trigger] = []
    for one, path in zip(bugs, bug_paths, strict=True):
        recovery = None
        if known_trigger is None:
            recovery = _recovered(encoder, one, path, patching_set, reverse_config, force, show_progress, len(bugs))
        found = known_trigger or recovery.trigger
        recoveries.append(recovery)
        triggers.append(next((seen for seen in triggers if seen.matches(found)), found))  # one trigger found twice
    report["distinct_triggers"] = len({id(t) for t in triggers})
    config, notes = _fitted(encoder, config, triggers, bugs, patching_set, options)
    if notes:
        report["recipe_note"] = "; ".join(notes)
    if isinstance(patching_set, Tensor):  # the patch holds D's training part with its augmented copies, as float32
        copies = config.augmented_copies
        require_memory(patching_set.nelement() * 4 * (1 + copies), data, f"{len(patching_set):,} patching images "
                       f"with {copies} augmented copies each", "use fewer images, or --augmented-copies 0")  # fmt: skip
    # under `accelerate launch`, one process writes
    with main_process_output_dir(out, overwrite, inputs=(model, *bug_paths, data, trigger)) as staging:
        written = _write_triggers(staging, trigger, recoveries, bugs)
        if len(bugs) == 1:
            report["trigger"] = written[0]
        regressions = [(earlier_bug, earlier_trigger) for earlier_bug, earlier_trigger, _ in earlier]
        checkpoints = PatchCheckpoints(
            checkpoint_folder(out), fingerprint(encoder.state_dict(), bugs, triggers, patching_set, config, regressions)
        )
        if not resume:
            checkpoints.remove()
        result = patch_encoder(
            encoder, bugs, triggers, patching_set, config, show_progress, earlier=regressions, checkpoints=checkpoints
        )
        report.update(save_patched(encoder, result, staging))
        report["trigger_pull"] = {"before": result.pull_before, "after": result.kept.holdout_pull}
        states = result.kept.bugs
        report["bugs"] = [
            {"report": str(path), "trigger": entry, "pull_before": before, **state}
            for path, entry, before, state in zip(bug_paths, written, result.pulls_before, states, strict=False)
        ]
        report["earlier_bugs"] = [{"report": folder, **state} for (_, _, folder), state in
                                  zip(earlier, states[len(bugs) :], strict=True)]  # fmt: skip
        kept = [(e_bug, e_trigger) for e_bug, e_trigger, _ in earlier]
        kept += [(one, t) for one, t, state in zip(bugs, triggers, states, strict=False) if state["fixed"]]
        report["fixed_bugs"] = write_fixed_bugs(staging / MODEL_DIR, kept)
        report["environment"] = environment_info()
        write_json(staging / "report.json", report)
    checkpoints.remove()
    return report


def _one_or_list(values: list[Any]) -> Any:
    """A report keeps its one-bug shape: one value for one bug, the list for several."""
    return values[0] if len(values) == 1 else values


def _recovered(
    encoder: Encoder,
    bug: BugReport,
    path: str | Path,
    patching_set: Tensor | list[str],
    config: RecoverySettings,
    force: bool,
    show_progress: bool,
    bugs: int,
) -> Any:
    """The recovered, verified trigger of ``bug``, refused (``CheckFailed``) unless it lands most clean inputs at
    ``h(x_b)`` (``checks.require_backdoor_signature``); a refusal names the report when there are several."""
    try:
        recovery = recover_trigger(encoder, bug, patching_set, config, force, show_progress)
    except CheckFailed as error:
        if bugs == 1:
            raise
        raise type(error)(f"{path}: {error}") from error
    if not force and recovery.pull is not None:  # a hostile report plants a backdoor: refuse what shows none
        require_backdoor_signature(recovery.pull.landed, recovery.pull.pull, str(path))
    return recovery


def _fitted(
    encoder: Encoder,
    config: PatchConfig,
    triggers: list[Trigger],
    bugs: list[BugReport],
    patching_set: Any,
    options: dict[str, Any],
) -> tuple[PatchConfig, list[str]]:
    """The recipe fitted to every distinct trigger, each with the first bug it was found in (each fit starts from
    ``config``; a fit that changes it wins)."""
    fitted, notes = config, []
    distinct: dict[int, tuple[Trigger, BugReport]] = {}
    for trigger, bug in zip(triggers, bugs, strict=True):
        distinct.setdefault(id(trigger), (trigger, bug))
    for trigger, bug in distinct.values():
        adapted, note = adapt_recipe(encoder, config, trigger, patching_set, options, bug.bug_input)
        if note and note not in notes:
            fitted, notes = adapted, [*notes, note]
    return fitted, notes


def _write_triggers(
    staging: Path, known: str | Path | None, recoveries: list[Any], bugs: list[BugReport]
) -> list[dict[str, Any]]:
    """Each bug's trigger files and summary: in ``staging`` for one bug, in ``staging/bug_NN/`` for several."""
    if known is not None:
        return [{"source": str(known)}]
    written = []
    for number, (recovery, one) in enumerate(zip(recoveries, bugs, strict=True), 1):
        folder = staging if len(bugs) == 1 else staging / f"bug_{number:02d}"
        folder.mkdir(exist_ok=True)
        entry = {"source": "reverse-engineered", **write_recovery(folder, recovery, one)}
        if folder != staging:
            entry["folder"] = folder.name
        written.append(entry)
    return written


def apply_delta_files(
    model: str | Path, delta: str | Path, out: str | Path, allow_pickle: bool = False, overwrite: bool = False
) -> dict[str, Any]:
    """``mudjacking apply``: a base model + ``patch_delta.safetensors`` -> ``out``, the patched model bit for bit.

    Refuses (``CheckFailed``, nothing written) a base whose weights are not the ones the delta was made from, and a
    result whose hash is not the recorded one. ``out`` also holds ``mudjacking_apply.json`` with both hashes.
    """
    base = load_encoder(model, allow_pickle=allow_pickle)
    patched = apply_weight_delta(base, delta)
    summary = {
        "base": str(model), "delta": str(delta), "base_sha256": weights_sha256(base),
        "result_sha256": weights_sha256(patched),
    }  # fmt: skip
    with atomic_output_dir(out, overwrite, inputs=(model, delta)) as staging:
        patched.save(staging)
        write_json(staging / "mudjacking_apply.json", summary)
    return summary


def verify_files(
    model: str | Path,
    base: str | Path,
    bugs: list[str | Path],
    data: str | Path,
    trigger: str | Path | None = None,
    out: str | Path | None = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, Any]:
    """``mudjacking verify``: re-runs the patch's label-free checks on a shipped model, for each bug report: the bug
    fixed, its trigger (recovered on ``base``, or ``trigger``) neutralised on the clean inputs ``data``, and locality
    against ``base``, at the goals of the model's recipe. ``report["passed"]`` is whether every check of every bug
    holds; ``out`` gets ``verify.json``."""
    patched = load_encoder(model, allow_pickle=allow_pickle)
    original = load_encoder(base, allow_pickle=allow_pickle)
    require_modality(patched, original.modality, source=model)
    checking_set = load_inputs(data, original.modality)
    known = load_trigger(trigger, original.modality) if trigger else None
    config = recipe_for(original, seed=seed)
    results = []
    for path in bugs:
        report_bug = load_bug_report(path)
        check_modality(report_bug, original.modality, source=path)
        check_same_size(report_bug, checking_set, path, data)
        used = known or recover_trigger(original, report_bug, checking_set, None, False, show_progress).trigger
        record = verify_patch(original, patched, report_bug, used, checking_set, config)
        results.append({
            "bug": str(path), "passed": record.goals_met, "bug_similarity": record.bug_similarity,
            "locality": record.holdout_locality, "trigger_neutralised": record.holdout_generalizability,
            "trigger_pull": record.holdout_pull, **used.describe(),
        })  # fmt: skip
    report = {"model": str(model), "base": str(base), "data": str(data), "goals": _goals(config), "bugs": results}
    report["passed"] = all(result["passed"] for result in results)
    if out is not None:
        with atomic_output_dir(out, overwrite, inputs=(model, base, data, trigger, *bugs)) as staging:
            write_json(staging / "verify.json", report)
    return report


def _goals(config: PatchConfig) -> dict[str, float]:
    return {
        "bug_similarity": config.goal_effectiveness, "locality": config.goal_locality,
        "locality_centred": config.goal_locality_centred, "trigger_neutralised": config.goal_generalizability,
        "trigger_pull": config.goal_pull,
    }  # fmt: skip


def attack_files(
    model: str | Path,
    shadow: str | Path,
    references: str | Path,
    out: str | Path,
    trigger: str | Path | None = None,
    trigger_size: int = 5,
    config: BadEncoderConfig | None = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    trigger_words: tuple[str, ...] = ("cf",),
    image_mean: list[float] | None = None,
    image_std: list[float] | None = None,
    kind: str = "badencoder",
) -> dict[str, Any]:
    """``mudjacking attack``: the registered attack ``kind`` (see :mod:`mudjacking.attacks.registry`) on a user's
    model -> ``out`` with the backdoored model and its trigger.

    Image models get a trigger npz (default: a white square of ``trigger_size``); text models a trigger JSON
    (default: ``trigger_words`` inserted at random positions).
    """
    attack_named(kind)  # an unknown kind is refused before anything is loaded
    encoder = load_encoder(model, allow_pickle=allow_pickle, image_mean=image_mean, image_std=image_std)
    attack = attack_named(kind, encoder.modality)
    shadow_inputs = load_inputs(shadow, encoder.modality)
    reference_inputs = load_inputs(references, encoder.modality)
    seed = config.seed if config else 0
    if trigger:
        used = load_trigger(trigger, encoder.modality)
    else:  # the attack's own trigger, or the modality's default one
        default = attack_trigger(encoder.modality, shadow_inputs, trigger_size, trigger_words, seed)
        used = attack.trigger_for(TriggerRequest(default, input_shape(shadow_inputs), seed))
    with atomic_output_dir(out, overwrite, inputs=(model, shadow, references, trigger)) as staging:
        result = attack.run(encoder, shadow_inputs, reference_inputs, used, config, show_progress)
        (staging / MODEL_DIR).mkdir()
        result.encoder.save(staging / MODEL_DIR)
        trigger_file = used.write(staging)[0]
        summary = {
            "kind": kind,
            **result.summary(),
            "model": MODEL_DIR,
            "trigger": trigger_file,
            "environment": environment_info(),
        }
        write_json(staging / "attack.json", summary)
    return summary


def evaluate_files(
    models: dict[str, str | Path],
    train: str | Path,
    test: str | Path,
    trigger: str | Path,
    target_label: int,
    out: str | Path,
    bug: str | Path | None = None,
    probe_kinds: tuple[str, ...] = ("linear",),
    allow_pickle: bool = False,
    overwrite: bool = False,
    image_mean: list[float] | None = None,
    image_std: list[float] | None = None,
) -> dict[str, Any]:
    """``mudjacking evaluate``: ACC/ASR/TBA (and bug fixed) of each model -> ``out/evaluation.json`` + bars."""
    started = time.perf_counter()
    encoders = {
        name: load_encoder(path, allow_pickle=allow_pickle, image_mean=image_mean, image_std=image_std)
        for name, path in models.items()
    }
    first = next(iter(models))
    modality = encoders[first].modality
    for name, encoder in encoders.items():  # compare like with like
        require_modality(encoder, modality, models[name])
    train_set = load_labeled(train, modality)
    test_set = load_labeled(test, modality)
    report_bug = load_bug_report(bug) if bug else None
    if report_bug is not None:
        check_modality(report_bug, modality, source=bug)
    with atomic_output_dir(out, overwrite, inputs=(*models.values(), train, test, trigger, bug)) as staging:
        scores = evaluate_models(
            encoders,
            train_set,
            test_set,
            load_trigger(trigger, modality),
            target_label,
            report_bug,
            probe_kinds,
            deployed_on=first,
        )
        for kind, per_model in scores.items():
            rows = {name: _bar_values(entry["deployed"]) for name, entry in per_model.items()}
            plot_before_after(rows, staging / f"scores_{kind}.png", f"{kind} classifier trained on '{first}'")
        summary = {
            "models": {k: str(v) for k, v in models.items()},
            "target_label": target_label,
            "scores": scores,
            "seconds": round(time.perf_counter() - started, 2),
            "environment": environment_info(),
        }
        write_json(staging / "evaluation.json", summary)
    return summary


def _bar_values(scores: dict[str, Any]) -> dict[str, float]:
    return {
        "ACC": scores["accuracy"],
        "ASR": scores["attack_success_rate"],
        "TBA": scores["triggered_accuracy"],
        "flip rate": scores["flip_rate"],
    }


__all__ = [
    "attack_files",
    "evaluate_files",
    "load_inputs",
    "load_labeled",
    "load_trigger",
    "patch_files",
    "recover_trigger",
    "reverse_config_for",
    "reverse_trigger_files",
]
