"""From per-seed scores to the experiment's table: one row per model × task × classifier, mean ± std over seeds."""

from __future__ import annotations

import statistics
from typing import Any

from mudjacking.pipeline.scenario import SOURCE_TASK

METRICS = ("ACC", "ASR", "TBA", "flip_rate", "asr_without_trigger")
RETRAINED = ("retrained_ACC", "retrained_ASR", "retrained_acc_drop_points")
OPTIONAL = (*RETRAINED, "control_flip_rate")
"""Figures only some rows carry (a retrained classifier, a control stamp): ``None`` in the table where none do."""


def seed_rows(
    scores: dict[str, Any], seconds: dict[str, float], control: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Flat rows of one seed: the deployed classifier's figures per model, task and classifier kind, with the
    accuracy drop against the backdoored model (what customers ran before the patch). Models scored with a
    retrained classifier as well get ``retrained_*`` figures, their drop also against the backdoored model's
    deployed accuracy; with ``control`` (model -> task -> kind -> flip rate), ``control_flip_rate``."""
    rows = []
    for task, per_kind in scores.items():
        for kind, per_model in per_kind.items():
            before = per_model["backdoored"]["deployed"]["accuracy"]
            for model, entry in per_model.items():
                s = entry["deployed"]
                row = {
                    "model": model,
                    "task": task,
                    "classifier": kind,
                    "ACC": s["accuracy"],
                    "ASR": s["attack_success_rate"],
                    "TBA": s["triggered_accuracy"],
                    "flip_rate": s["flip_rate"],
                    "asr_without_trigger": s["clean_target_rate"],
                    "acc_drop_points": round(100 * (before - s["accuracy"]), 2),
                    "bug_fixed": s["bug_fixed"],
                    "reference_kept": s.get("reference_kept"),
                    "patch_seconds": seconds.get(model),
                }
                if control and task in control.get(model, {}):
                    row["control_flip_rate"] = control[model][task][kind]
                if "retrained" in entry:
                    r = entry["retrained"]
                    row |= {
                        "retrained_ACC": r["accuracy"],
                        "retrained_ASR": r["attack_success_rate"],
                        "retrained_acc_drop_points": round(100 * (before - r["accuracy"]), 2),
                    }
                rows.append(row)
    return rows


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def aggregate_seeds(seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of every metric, per (attack ×) model × task × classifier; ``bug_fixed`` and
    ``reference_kept`` as counts."""
    groups: dict[tuple[str | None, str, str, str], list[dict[str, Any]]] = {}
    for seed in seeds:
        for row in seed["rows"]:
            groups.setdefault((row.get("attack"), row["model"], row["task"], row["classifier"]), []).append(row)
    table = []
    for (attack, model, task, kind), rows in groups.items():
        entry: dict[str, Any] = {} if attack is None else {"attack": attack}
        entry |= {"model": model, "task": task, "classifier": kind, "seeds": len(rows)}
        for metric in (*METRICS, "acc_drop_points"):
            entry[metric] = _mean_std([row[metric] for row in rows])
        for metric in OPTIONAL:
            values = [row[metric] for row in rows if metric in row]
            entry[metric] = _mean_std(values) if values else None
        for metric in ("bug_fixed", "reference_kept"):
            counted = [row[metric] for row in rows if row.get(metric) is not None]
            entry[metric] = f"{sum(counted)}/{len(counted)}" if counted else None
        times = [row["patch_seconds"] for row in rows if row["patch_seconds"] is not None]
        entry["patch_seconds"] = _mean_std(times) if times else None
        table.append(entry)
    return table


CONTROL_MODELS = ("clean", "backdoored", "mudjacking", "oracle-trigger")
"""The models whose control-stamp flip rate an attack's summary carries."""

ASR_BAR, DROP_BAR = 0.05, 1.5
"""An attack Mudjacking holds against: ASR after the patch at most 5% with at most 1.5 points of accuracy lost, on
the bug's task, every seed patched, its reported bug fixed and the bug's reference still classified right (the attack
suite's bar, issue 12)."""


def attack_verdicts(
    seeds: list[dict[str, Any]], table: list[dict[str, Any]], metric: str = "ASR"
) -> list[dict[str, Any]]:
    """Per attack of a suite: its backdoor before and after Mudjacking and the oracle on the bug's task (first
    classifier), what became of its other backdoors' tasks, and a verdict that says why when Mudjacking did not
    hold: the attack planted no backdoor, recovery refused, or the patch left the backdoor, left the reported bug
    misclassified, put its reference on the wrong side, or cost accuracy past the bar. ``metric``: what the backdoor
    is measured by, ASR, or for text the flip rate (a sentence classifier puts 12-18% of a never-backdoored model's
    inputs in the target class, so text ASR has that floor)."""
    verdicts = []
    for attack in dict.fromkeys(seed["attack_kind"] for seed in seeds if "attack" in seed["rows"][0]):
        runs = [seed for seed in seeds if seed["attack_kind"] == attack]
        rows = [row for row in table if row.get("attack") == attack and row["classifier"] == table[0]["classifier"]]
        # a source-specific backdoor is judged on its source class, where it is meant to work
        task = next((row["task"] for row in rows if SOURCE_TASK in row["task"]), runs[0]["bug_task"])
        means = {(row["model"], row["task"]): row for row in rows}

        def mean(model: str, metric: str, on: str, means: dict = means) -> float | None:
            figure = means[model, on].get(metric) if (model, on) in means else None
            return None if figure is None else figure["mean"]

        no_bug = sum(seed["bug"] is None for seed in runs)
        refused = sum(seed["bug"] is not None and seed["trigger"] is None for seed in runs)
        others = [name for name in dict.fromkeys(row["task"] for row in rows) if name != task]
        entry = {
            "attack": attack, "task": task, "classifier": rows[0]["classifier"], "seeds": len(runs),
            "metric": metric, "backdoored_ASR": mean("backdoored", metric, task),
            "mudjacking_ASR": mean("mudjacking", metric, task),
            "acc_drop_points": mean("mudjacking", "acc_drop_points", task),
            "oracle_ASR": mean("oracle-trigger", metric, task),
            "clean_ASR": mean("clean", metric, task),
            "patched_seeds": len(runs) - no_bug - refused, "refused_seeds": refused, "no_bug_seeds": no_bug,
            "other_tasks": {name: {"backdoored_ASR": mean("backdoored", metric, name),
                                   "mudjacking_ASR": mean("mudjacking", metric, name)} for name in others},
        }  # fmt: skip
        patched = [(seed, row) for seed in runs for row in _seed_rows(seed, "mudjacking", task, entry["classifier"])]
        worst_seed, worst = max(patched, key=lambda pair: pair[1][metric], default=({"rows": []}, None))
        # the never-backdoored model on the seed the patch left worst: what the trigger does without a backdoor
        clean = _seed_rows(worst_seed, "clean", task, entry["classifier"])
        # the customer's own complaint: does the deployed classifier now get the reported input right, and the
        # reference they reported it with, which they saw classified right, still?
        on_bug = [row for seed in runs for row in _seed_rows(seed, "mudjacking", seed["bug_task"], entry["classifier"])]
        for question, count, scored in (("bug_fixed", "bugs_fixed", "bugs_scored"),
                                        ("reference_kept", "references_kept", "references_scored")):  # fmt: skip
            answers = [row[question] for row in on_bug if row.get(question) is not None]
            entry[count], entry[scored] = sum(answers), len(answers)
        # an ordinary stamp's flip rate on each model (where measured): the floor its trigger's flip rate can reach
        floors = {model: mean(model, "control_flip_rate", task) for model in CONTROL_MODELS}
        entry["control_flip_rate"] = {model: floor for model, floor in floors.items() if floor is not None}
        entry["control_stamp"] = next((seed["control_stamp"] for seed in runs if seed.get("control_stamp")), None)
        entry["worst_seed"] = {
            "mudjacking_ASR": None if worst is None else worst[metric],
            "acc_drop_points": max((row["acc_drop_points"] for _, row in patched), default=None),
            "clean_ASR": clean[0][metric] if clean else None,
        }
        entry["verdict"] = _verdict(entry)
        verdicts.append(entry)
    return verdicts


def _verdict(entry: dict[str, Any]) -> str:
    if entry["no_bug_seeds"] == entry["seeds"] or (entry["backdoored_ASR"] or 0) < 0.5:
        return f"no backdoor planted ({_named(entry)} {100 * (entry['backdoored_ASR'] or 0):.1f}% before any defence)"
    reasons = []
    if entry["refused_seeds"] or entry["no_bug_seeds"]:
        reasons.append(f"trigger recovery refused on {entry['refused_seeds']} of {entry['seeds']} seeds")
    worst = entry["worst_seed"]
    if worst["mudjacking_ASR"] is not None and worst["mudjacking_ASR"] > ASR_BAR:
        reason = f"{_named(entry)} {100 * worst['mudjacking_ASR']:.1f}% after the patch (worst seed)"
        if (worst.get("clean_ASR") or 0) > ASR_BAR:
            reason += (
                f", where the never-backdoored model scores {100 * worst['clean_ASR']:.1f}% with the same trigger "
                "(the trigger itself moves that classifier)"
            )
        reasons.append(reason)
    unfixed = entry["bugs_scored"] - entry["bugs_fixed"]
    if unfixed:
        reasons.append(f"the reported bug is still misclassified on {unfixed} of {entry['bugs_scored']} patched seeds")
    lost = entry["references_scored"] - entry["references_kept"]
    if lost:
        scored = entry["references_scored"]
        reasons.append(f"the bug's reference is now misclassified on {lost} of {scored} patched seeds")
    if worst["acc_drop_points"] is not None and worst["acc_drop_points"] > DROP_BAR:
        reasons.append(f"the patch cost {worst['acc_drop_points']:.1f} points of accuracy (worst seed)")
    return "breaks: " + "; ".join(reasons) if reasons else "holds"


def _seed_rows(seed: dict[str, Any], model: str, task: str, classifier: str) -> list[dict[str, Any]]:
    """One seed's rows of ``model`` on ``task`` under ``classifier``."""
    return [row for row in seed["rows"] if (row["model"], row["task"], row["classifier"]) == (model, task, classifier)]


def _named(entry: dict[str, Any]) -> str:
    return "flip rate" if entry.get("metric") == "flip_rate" else "ASR"
