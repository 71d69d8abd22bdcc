"""The demo's headline figures: per task and classifier, the customer's deployed classifier on the backdoored model
(before) and on the patched one (after), beside the baselines; and their mean and range over seeds."""

from __future__ import annotations

from typing import Any

BEFORE, AFTER = "backdoored", "mudjacking"
REFERENCE_ROWS = ("clean", BEFORE, AFTER)


def summarise(
    scores: dict[str, dict[str, dict[str, Any]]],
    trigger_quality: dict[str, Any],
    control: dict[str, dict[str, dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """``{"trigger": quality, "tasks": {task: {kind: headline row}}}`` from a pipeline run's scores."""
    tasks: dict[str, Any] = {}
    for task, per_kind in scores.items():
        for kind, rows in per_kind.items():
            before, after = rows[BEFORE]["deployed"], rows[AFTER]["deployed"]
            row: dict[str, Any] = {
                "acc_before": before["accuracy"],
                "acc_after": after["accuracy"],
                "acc_drop_points": round(100 * (before["accuracy"] - after["accuracy"]), 2),
                "asr_before": before["attack_success_rate"],
                "asr_after": after["attack_success_rate"],
                "asr_without_trigger_after": after["clean_target_rate"],
                "tba_after": after["triggered_accuracy"],
                "flip_rate_before": before["flip_rate"],
                "flip_rate_after": after["flip_rate"],
                "bug_fixed": after["bug_fixed"],
                "reference_kept": after.get("reference_kept"),
            }
            if "clean" in rows:
                row["asr_clean_model"] = rows["clean"]["deployed"]["attack_success_rate"]
            if control is not None and task in control[BEFORE]:  # once per customer's data
                row["control_word_flip_rate_before"] = control[BEFORE][task][kind]
                row["control_word_flip_rate_after"] = control[AFTER][task][kind]
            baselines = {name: entry["deployed"] for name, entry in rows.items() if name not in REFERENCE_ROWS}
            row["baseline_asr"] = {name: entry["attack_success_rate"] for name, entry in baselines.items()}
            row["baseline_flip_rate"] = {name: entry["flip_rate"] for name, entry in baselines.items()}
            tasks.setdefault(task, {})[kind] = row
    return {"trigger": trigger_quality, "tasks": tasks}


def spread(values: list[float]) -> dict[str, float]:
    """Mean, min and max of one figure over seeds."""
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float)  # bools count: the share of seeds where x_b was fixed


def aggregate_seeds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, min and max over seeds of every numeric headline figure, per task and classifier."""
    first = reports[0]["summary"]
    aggregate: dict[str, Any] = {
        "seeds": [r["seed"] for r in reports],
        "trigger": {
            key: spread([float(r["summary"]["trigger"][key]) for r in reports])
            for key, value in first["trigger"].items()
            if _numeric(value)
        },
        "total_seconds": spread([r["timings_seconds"]["total"] for r in reports]),
        "tasks": {},
    }
    for task, per_kind in first["tasks"].items():
        for kind, row in per_kind.items():
            rows = [r["summary"]["tasks"][task][kind] for r in reports]
            figures: dict[str, Any] = {
                key: spread([float(other[key]) for other in rows]) for key, value in row.items() if _numeric(value)
            }
            for key in ("baseline_asr", "baseline_flip_rate"):
                figures[key] = {name: spread([other[key][name] for other in rows]) for name in row[key]}
            aggregate["tasks"].setdefault(task, {})[kind] = figures
    return aggregate
