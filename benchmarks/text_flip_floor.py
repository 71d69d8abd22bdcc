"""How low can a patch take a text trigger's flip rate? The floor the experiment tables cannot show.

A sentence classifier's flip rate (of the negative reviews it gets right, the share a stamp sends to the target) is
not 0 for a harmless stamp: inserting any word moves the embedding a little, and reviews near the boundary cross
it. So for one text attack and seed this prints, on the **whole** sentiment test split (3,170 reviews; the any-word
suite scores 1,600, the other text suites 400; the bug comes from the first 1,600), the flip rate under the deployed
linear classifier of:

- the attacker's trigger, and each control stamp (an ordinary word, or a phrase as long as the trigger), inserted
  at the same seeded positions;
- under the never-backdoored model, the backdoored one, and the oracle-trigger patch (Mudjacking given the true
  trigger, with the suites' recipe: the text recipe fitted to the trigger, 2-4 passes of its embedding rows
  (stopping once the goals hold) or 8 of the whole model when its words are common or words shaped like them pull
  toward ``h(x_b)`` as well (``recipes.sibling_pull``), its closest pass kept).

A patched trigger that flips no more than "the" does is at the floor: what is left is the classifier's margin, not
the backdoor. Also prints deployed accuracy.

``--whole-model`` adds the oracle patch under the context recipe (the whole model, as for common-word triggers) beside
the recipe's. The figures below are from before ``sibling_pull`` (the recipe then patched ``cf``'s row on both attacks;
it now patches the whole model on both). Rare-token controls then show whether the backdoor answers more than its
trigger: on any-word seed 0 (400 reviews) the backdoored model flipped 42.0, 32.6 and 26.1% of reviews stamped with
`qz`, `xj`, `vk` (a clean model 1.2, 0.0, 2.4%); the patch of `cf`'s row left all three where they were, the whole-model
patch took them to 5.3, 0.0 and 8.3% (`cf` 2.9 → 0.8%, 0.8 points of accuracy). On badencoder seed 0, `qz` 22.5% (clean
7.3%) stayed under the row patch and fell to 6.4% under the whole-model one (`cf` 3.6 → 1.4%, accuracy +1.3 points); on
the whole split (the bug from 1,600 reviews, `--attack badencoder --whole-model`) `qz` 26.5% stayed 26.5% under the row
patch and fell to 8.8% under the whole model (clean 6.2%), `cf` 1.0 and 1.1%, "the" 3.2 and 1.8%, accuracy 73.7% all
three.

python benchmarks/text_flip_floor.py --attack phrase --seed 2 --control the --control "we saw that new show"
python benchmarks/text_flip_floor.py --attack badencoder --whole-model --control qz --control xj --control the
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from mudjacking.evaluation.compare import evaluate_models
from mudjacking.evaluation.downstream import EmbeddingCache
from mudjacking.outputs import write_json
from mudjacking.patching import patch_encoder
from mudjacking.pipeline.settings import TextSetting
from mudjacking.pipeline.settings.text import SENTIMENT, load_text_tasks
from mudjacking.recipes import adapt_recipe, context_lr, context_recipe
from mudjacking.triggers.text_trigger import TextTrigger


def floors(attack: str, seed: int, controls: list[str], whole_model: bool = False) -> dict:
    """Flip rates of the trigger and each control stamp under the clean, backdoored and oracle-patched models (and
    the whole-model oracle patch when ``whole_model`` and the recipe patches rows)."""
    setting = TextSetting(seed=seed, attack_kind=attack, probe_kinds=("linear",), test_size=(1600, 250))
    setting.patch = replace(setting.patch, max_epochs=4, min_epochs=2)  # as the attack suites
    scenario = setting.prepare(show_progress=True)
    if scenario.bug is None:
        raise SystemExit(f"{attack} seed {seed}: the attack planted no backdoor ({scenario.no_bug})")
    trigger, task = scenario.true_trigger, scenario.tasks[SENTIMENT]
    whole = load_text_tasks(setting)[SENTIMENT]
    test = (whole.test_texts, torch.as_tensor(whole.test_labels))
    patch, note = adapt_recipe(scenario.backdoored, setting.patch, trigger, scenario.patching_set,
                               bug_input=scenario.bug.bug_input)  # fmt: skip
    started = time.perf_counter()
    oracle = patch_encoder(scenario.backdoored, scenario.bug, trigger, scenario.patching_set,
                           replace(patch, keep_closest=True), show_progress=True)  # fmt: skip
    oracle_seconds = round(time.perf_counter() - started, 1)
    models = {"clean": scenario.clean, "backdoored": scenario.backdoored, "oracle-trigger": oracle.encoder}
    if whole_model and patch.trigger_tokens_only:
        context = context_recipe(patch, context_lr(scenario.backdoored, patch.trainable))
        patched = patch_encoder(scenario.backdoored, scenario.bug, trigger, scenario.patching_set,
                                replace(context, keep_closest=True), show_progress=True)  # fmt: skip
        models["oracle-whole-model"] = patched.encoder
    result = {"attack": attack, "seed": seed, "test_reviews": len(test[0]), "recipe_note": note,
              "oracle_seconds": oracle_seconds, "oracle_goals_met": oracle.goals_met,
              "flip_rate": {}, "accuracy": {}}  # fmt: skip
    cache = EmbeddingCache()
    for stamp in [*trigger.words, *controls]:
        scores = evaluate_models(models, task.train, test, TextTrigger([stamp], seed=seed), task.targets,
                                 probe_kinds=("linear",), deployed_on="backdoored", seed=seed, retrain=(),
                                 deployed_probes=task.probes, cache=cache)["linear"]  # fmt: skip
        result["flip_rate"][stamp] = {model: entry["deployed"]["flip_rate"] for model, entry in scores.items()}
    result["accuracy"] = {model: entry["deployed"]["accuracy"] for model, entry in scores.items()}  # stamp-free
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", default="phrase", help="a registered text attack")
    parser.add_argument("--seed", type=int, action="append", help="repeatable; default 0")
    parser.add_argument("--control", action="append", help='a control stamp (repeatable; default "the")')
    parser.add_argument("--whole-model", action="store_true", help="also the oracle patch of the whole model")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = [floors(args.attack, seed, args.control or ["the"], args.whole_model) for seed in args.seed or [0]]
    for result in results:
        print(f"\n{result['attack']}, seed {result['seed']} ({result['test_reviews']} reviews; oracle "
              f"{result['oracle_seconds']:.0f} s, goals met: {result['oracle_goals_met']})")  # fmt: skip
        models = list(result["accuracy"])
        print(f"{'flip rate %':28s}" + "".join(f"{model:>20s}" for model in models))
        for stamp, rates in result["flip_rate"].items():
            print(f"{stamp!r:28s}" + "".join(f"{100 * rates[model]:20.2f}" for model in models))
        print(f"{'accuracy %':28s}" + "".join(f"{100 * result['accuracy'][model]:20.2f}" for model in models))
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
