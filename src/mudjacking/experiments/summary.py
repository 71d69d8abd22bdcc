"""From per-seed scores to the experiment's table: one row per model × task × classifier, mean ± std over seeds."""

from __future__ import annotations

import statistics
from typing import Any

METRICS = ("ACC", "ASR", "TBA", "flip_rate", "asr_without_trigger")
RETRAINED = ("retrained_ACC", "retrained_ASR", "retrained_acc_drop_points")


def seed_rows(scores: dict[str, Any], seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Flat rows of one seed: the deployed classifier's figures per model, task and classifier kind, with the
    accuracy drop against the backdoored model (what customers ran before the patch). Models scored with a
    retrained classifier as well get ``retrained_*`` figures, their drop also against the backdoored model's
    deployed accuracy."""
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
                    "patch_seconds": seconds.get(model),
                }
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
    """Mean ± std over seeds of every metric, per (attack ×) model × task × classifier; ``bug_fixed`` as a count."""
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
        for metric in RETRAINED:
            values = [row[metric] for row in rows if metric in row]
            entry[metric] = _mean_std(values) if values else None
        fixed = [row["bug_fixed"] for row in rows if row["bug_fixed"] is not None]
        entry["bug_fixed"] = f"{sum(fixed)}/{len(fixed)}" if fixed else None
        times = [row["patch_seconds"] for row in rows if row["patch_seconds"] is not None]
        entry["patch_seconds"] = _mean_std(times) if times else None
        table.append(entry)
    return table
