"""The experiment's table as Markdown, and as one self-contained HTML page (pictures inlined, no network)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment

from mudjacking.outputs import atomic_write_text
from mudjacking.report.plots import plot_method_bars

COLUMNS = (("ACC", "ACC %"), ("ASR", "ASR %"), ("TBA", "TBA %"), ("flip_rate", "flip %"))


def _pm(stats: dict[str, float] | None, scale: float = 100.0, digits: int = 1) -> str:
    if stats is None:
        return "–"
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f}"


def _by_attack(report: dict[str, Any]) -> bool:
    return any("attack" in row for row in report["table"])


def table_lines(report: dict[str, Any]) -> list[list[str]]:
    """Header and rows of the experiment table, as strings (an ``attack`` column first when it ran several)."""
    attack = ["attack"] if _by_attack(report) else []
    header = [*attack, "task", "classifier", "model", *[label for _, label in COLUMNS], "ACC drop (pts)", "x_b fixed",
              "x_r kept", "time s"]  # fmt: skip
    rows = [header]
    for row in report["table"]:
        rows.append(
            [
                *([row["attack"]] if attack else []),
                row["task"],
                row["classifier"],
                row["model"],
                *[_pm(row[key]) for key, _ in COLUMNS],
                _pm(row["acc_drop_points"], 1.0, 2),
                row["bug_fixed"] or "–",
                row.get("reference_kept") or "–",
                _pm(row["patch_seconds"], 1.0, 0),
            ]
        )
    return rows


def verdict_lines(report: dict[str, Any]) -> list[list[str]]:
    """Header and rows of the attack suite's summary: per attack, its backdoor before and after Mudjacking, the
    oracle, the other backdoors' tasks and the verdict (empty without attacks)."""
    verdicts = report.get("attacks") or []
    if not verdicts:
        return []
    name = "flip %" if verdicts[0].get("metric") == "flip_rate" else "ASR %"
    header = ["attack", f"clean model {name}", f"backdoored {name}", f"Mudjacking {name}", "ACC drop (pts)",
              "seeds patched", "bug fixed", "reference kept", f"oracle {name}", f"other tasks: {name} before → after",
              "verdict"]  # fmt: skip
    control = any(entry.get("control_flip_rate") for entry in verdicts)
    if control:  # after the oracle: the floor its figure sits against
        header.insert(9, f"ordinary stamp {name}: Mudjacking / oracle")
    percent = lambda value: "–" if value is None else f"{100 * value:.1f}"  # noqa: E731
    rows = [header]
    for entry in verdicts:
        others = "; ".join(
            f"{name}: {percent(figures['backdoored_ASR'])} → {percent(figures['mudjacking_ASR'])}"
            for name, figures in entry["other_tasks"].items()
        )
        drop = entry["acc_drop_points"]
        fixed = f"{entry['bugs_fixed']}/{entry['bugs_scored']}" if entry.get("bugs_scored") else "–"
        kept = f"{entry['references_kept']}/{entry['references_scored']}" if entry.get("references_scored") else "–"
        row = [entry["attack"], percent(entry.get("clean_ASR")), percent(entry["backdoored_ASR"]),
               percent(entry["mudjacking_ASR"]),
               "–" if drop is None else f"{drop:.2f}", f"{entry['patched_seeds']}/{entry['seeds']}", fixed, kept,
               percent(entry["oracle_ASR"]), others or "–", entry["verdict"]]  # fmt: skip
        if control:
            floor = entry.get("control_flip_rate") or {}
            stamp = " ".join(repr(unit) for unit in entry.get("control_stamp") or [])
            figures = f"{percent(floor.get('mudjacking'))} / {percent(floor.get('oracle-trigger'))}"
            row.insert(9, f"{figures} ({stamp})" if stamp else figures)
        rows.append(row)
    return rows


def retrained_lines(report: dict[str, Any]) -> list[list[str]]:
    """Header and rows of the second table: models also scored with a classifier retrained on their own
    embeddings (empty when none were)."""
    attack = ["attack"] if _by_attack(report) else []
    header = [*attack, "task", "classifier", "model", "ACC %", "ASR %", "ACC drop (pts)"]
    rows = [
        [
            *([row["attack"]] if attack else []),
            row["task"],
            row["classifier"],
            row["model"],
            _pm(row["retrained_ACC"]),
            _pm(row["retrained_ASR"]),
            _pm(row["retrained_acc_drop_points"], 1.0, 2),
        ]
        for row in report["table"]
        if row.get("retrained_ACC")
    ]
    return [header, *rows] if rows else []


VERDICT_NOTE = (
    "On the bug's task (a source-specific backdoor: its source class), first classifier, mean over the seeds that "
    "were patched. Mudjacking holds where every seed was patched and on each one ASR after the patch is at most 5% "
    "with at most 1.5 points of accuracy lost, the reported bug classified right (bug fixed) and the reference it "
    "came with still classified right (reference kept); otherwise the "
    "verdict says why. Other tasks: each further backdoor of the attack, and a source-specific backdoor's whole task. "
    "Ordinary stamp (where measured, named in brackets): the setting's control stamp, ordinary words as many as "
    "the trigger has, inserted as the trigger is, "
    "scored on the same model: how often stamping anything flips a prediction, the floor the trigger's own figure "
    "can reach."
)
RETRAINED_NOTE = (
    "A customer who retrains its classifier on the model's own embeddings (same training set and recipe) gets "
    "these figures; the drop is against the backdoored model's deployed classifier, mean ± std over seeds."
)


def _markdown_table(lines: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(lines[0]) + " |",
        "|" + "---|" * len(lines[0]),
        *["| " + " | ".join(row) + " |" for row in lines[1:]],
    ]


def _seeds(report: dict[str, Any]) -> list[int]:
    """The seeds run (each attack of a suite runs all of them)."""
    return sorted({seed["seed"] for seed in report["seeds"]})


def _seed_name(seed: dict[str, Any]) -> str:
    return seed.get("folder", f"seed-{seed['seed']}").replace("/", ", ")


def _trigger_line(seed: dict[str, Any]) -> str:
    if seed.get("trigger") is None:
        why = seed.get("refused") or ""
        step = "NO BUG (the attack failed)" if seed.get("bug") is None else "trigger recovery REFUSED"
        ran = "only the oracle ran" if seed.get("defences") else "no defence ran"
        return f"{_seed_name(seed)}: {step}, so {ran}: {why}"
    quality = seed["trigger"]["quality"]
    if "iou" in quality:
        return (
            f"{_seed_name(seed)}: recovered {quality['pixels']} pixels, IoU with the true trigger {quality['iou']:.2f}"
        )
    return f"{_seed_name(seed)}: recovered words {quality['words']}, exact match {quality['exact_match']}"


def write_markdown_report(report: dict[str, Any], path: Path) -> None:
    """``report.md``: the table (mean ± std over seeds) and trigger recovery per seed."""
    lines = table_lines(report)
    retrained = retrained_lines(report)
    extra = []
    if retrained:
        extra = ["## Customers who retrain their classifier", "", RETRAINED_NOTE, "", *_markdown_table(retrained), ""]
    verdicts = verdict_lines(report)
    if verdicts:
        extra = ["## Attacks: where Mudjacking holds and where it breaks", "", VERDICT_NOTE, "",
                 *_markdown_table(verdicts), "", *extra]  # fmt: skip
    text = [
        f"# Experiment: {report['experiment']}",
        "",
        f"Seeds {_seeds(report)}; every defence had Mudjacking's budget (its epochs and seconds, "
        "whichever ended first). "
        "Figures are the customers' deployed classifiers (trained on the backdoored model), mean ± std over seeds.",
        "",
        *_markdown_table(lines),
        "",
        *extra,
        "## Trigger recovery",
        "",
        *[f"- {_trigger_line(seed)}" for seed in report["seeds"]],
        "",
        f"Total time {report['total_seconds']:.0f} s on {machine_line(report.get('environment', {}))}.",
        "",
    ]
    atomic_write_text(path, "\n".join(text))


def machine_line(environment: dict[str, Any]) -> str:
    """Where the figures were measured, in words: they follow the CPU's vector instructions as well as the seeds."""
    cpu = environment.get("cpu") or {}
    parts = [f"{environment.get('cpu_threads', '?')} CPU threads", cpu.get("model") or "an unnamed CPU"]
    if cpu.get("capability"):
        parts.append(f"{cpu['capability']} kernels")
    if cpu.get("caps"):
        parts.append("capped by " + ", ".join(f"{name}={value}" for name, value in cpu["caps"].items()))
    if environment.get("cuda"):
        parts.append("CUDA available")
    return ", ".join(parts)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _bar_pictures(report: dict[str, Any], directory: Path) -> list[tuple[str, str]]:
    """ACC/ASR bars per task and classifier (mean over seeds), as data URIs."""
    pictures = []
    groups: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
    for row in report["table"]:
        groups.setdefault((row.get("attack", ""), row["task"], row["classifier"]), {})[row["model"]] = {
            "ACC": row["ACC"]["mean"],
            "ASR": row["ASR"]["mean"],
        }
    for index, ((attack, task, kind), rows) in enumerate(groups.items()):
        path = directory / f"bars_{index}.png"
        where = f"{attack + ', ' if attack else ''}{task}"
        plot_method_bars(rows, path, f"{where}: {kind} classifier (mean over seeds)")
        pictures.append((f"ACC and ASR per defence — {where}, {kind} classifier", _data_uri(path)))
        path.unlink()
    return pictures


TEMPLATE = """{% macro figure(caption, uri) %}
<figure><img src="{{ uri }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endmacro %}{% macro table(id, lines) %}
<table id="{{ id }}"><thead><tr>{% for h in lines[0] %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% set names = lines[0].index('model') %}{% for row in lines[1:] %}<tr class="{{ row[names] }}">
{%- for cell in row %}<td{% if loop.index0 <= names %} class="name"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% endmacro %}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mudjacking experiment: {{ name }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td.name { text-align: left; }
tr.mudjacking td { background: #eef7ee; font-weight: 600; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 12px; color: #555; max-width: 560px; }
img { max-width: 540px; border: 1px solid #ddd; }
</style></head><body>
<h1>Experiment: {{ name }}</h1>
<p>Setting <b>{{ setting }}</b>, seeds {{ seeds }}, {{ total }} s in all. Every defence had Mudjacking's budget
(its epochs and seconds, whichever ended first). Figures: the customers' deployed classifiers (trained on the
backdoored model), mean ± std over seeds.</p>
{% if verdicts %}<h2>Attacks: where Mudjacking holds and where it breaks</h2><p>{{ verdict_note }}</p>
<table id="attacks"><thead><tr>{% for h in verdicts[0] %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% for row in verdicts[1:] %}<tr>{% for cell in row %}<td{% if loop.first or loop.last %} class="name"{% endif %}>
{{- cell }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>{% endif %}
{{ table("results", lines) }}
{% if retrained %}<h2>Customers who retrain their classifier</h2><p>{{ retrained_note }}</p>
{{ table("retrained", retrained) }}{% endif %}
<h2>What the patch did</h2>
{% for caption, uri in bars %}{{ figure(caption, uri) }}{% endfor %}
<h2>Trigger recovery and patching, per seed</h2>
{% for seed in per_seed %}<h3>{{ seed.name }}</h3><p>{{ seed.line }}. Bug: <code>{{ seed.bug }}</code></p>
{% for caption, uri in seed.pictures %}{{ figure(caption, uri) }}{% endfor %}{% endfor %}
<h2>Environment</h2><pre>{{ environment }}</pre>
</body></html>
"""

CAPTIONS = {
    "trigger": "Attribution over x_b: recovered trigger (k-means minority cluster) against the attacker's true trigger",
    "histogram": "Attribution scores of x_b and the k-means cut between trigger and rest",
    "losses": "Mudjacking's three loss terms per step",
}


def write_html_report(report: dict[str, Any], directory: Path, path: Path) -> None:
    """``report.html``: table, ACC/ASR bars per task and defence, and per seed the trigger attribution, the score
    histogram with its cut and the loss curves; every picture inlined as a data URI."""
    lines = table_lines(report)
    per_seed = []
    for seed in report["seeds"]:
        folder = directory / seed.get("folder", f"seed-{seed['seed']}")
        shown = (seed["trigger"] or {}).get("pictures", {})
        pictures = [(CAPTIONS[key], _data_uri(folder / name)) for key, name in shown.items()]
        bug = (seed["bug"] or {}).get("bug_input", "none: the attack planted no backdoor")
        per_seed.append(
            {
                "name": _seed_name(seed),
                "line": _trigger_line(seed),
                "pictures": pictures,
                "bug": bug if isinstance(bug, str) else "image",
            }
        )
    page = (
        Environment(autoescape=True)
        .from_string(TEMPLATE)
        .render(
            name=report["experiment"],
            setting=report["config"]["setting"],
            seeds=_seeds(report),
            total=f"{report['total_seconds']:.0f}",
            lines=lines,
            retrained=retrained_lines(report),
            verdicts=verdict_lines(report),
            verdict_note=VERDICT_NOTE,
            retrained_note=RETRAINED_NOTE,
            bars=_bar_pictures(report, directory),
            per_seed=per_seed,
            environment=str(report["environment"]),
        )
    )
    atomic_write_text(path, page)
