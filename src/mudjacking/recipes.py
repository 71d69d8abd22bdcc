"""Patch recipes that follow the modality: what ``mudjacking patch`` uses unless told otherwise.

Each recipe is the one measured on that modality (README: the demos). Text patching with the image recipe (the
whole model, up to 20 epochs) had not finished on ~1,500 sentences after 40 CPU-minutes; the text recipe trains a
few embedding rows in about a minute. A trigger word common in the patching set cannot be patched that way (its
row is read by every sentence holding it), so the text recipe falls back to patching the context; so does a backdoor
that answers rare words in general (BadEncoder taught MiniLM that ``qz`` means what ``cf`` does), which moving the
trigger's own rows leaves in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mudjacking.errors import ConfigError
from mudjacking.geometry import embedding_geometry
from mudjacking.patching import PatchConfig
from mudjacking.triggers.pull import backdoor_carriers, pull_toward
from mudjacking.triggers.text_trigger import TextTrigger
from mudjacking.triggers.trigger import ImageTrigger

COMMON_SHARE = 0.01
"""A trigger token found in more than this share of the patching sentences is a common one."""

WHOLE_TEXT_MODEL_LR = 1e-4
"""Learning rate of the text demo's locality-only baseline (whole-model fine-tuning of MiniLM)."""

REFERENCE_PARAMETERS = 100_000
"""Model size (trained parameters) at which a whole-model patch takes the image recipe's learning rate as it is."""


def image_recipe() -> PatchConfig:
    """The whole model, D plus 3 augmented copies of each image (so locality holds around D, not only on it), at
    most 10 passes, early stop once the goals hold, locality also measured in D's whitened embedding space (weight
    0.05), ``L_e`` aimed between ``x_b`` with the recovered trigger taken out and ``x_r`` (``bug_and_reference``), and
    ``x_r`` held where it was with 10 times a batch's locality weight (``reference_weight``).

    The target: aimed at ``x_b ⊖ t`` alone, a source-specific backdoor's patch met every goal while the deployed
    classifier still got ``x_b`` wrong on 2 of 2 seeds (the backdoored model misreads ``x_b ⊖ t``: a bag as an ankle
    boot), and the frequency oracle's on 2 of 3; aimed at ``h(x_r)`` alone a borderline shirt (tiny-trigger seed 2)
    stayed wrong. Between the two fixed all of those but that shirt. The hold: on the image suites the patch of
    BadEncoder seed 1 fixed ``x_b`` and moved its reference, a bag at 0.43, across to another class at cosine 0.994
    of where it was; at weight 1 tiny-trigger seed 2's reference (0.42 against 0.39) still crossed, at 10 it stayed.

    Without the whitened term a ResNet pooled-output encoder reached held-out locality 0.990 after 10 passes (goals
    unmet) and its deployed linear classifier lost 1.6 points; with it, 0.995 after 9 passes and 0.4 points. The
    paper's ``L_e`` (onto ``h'(x_r)``) is met by moving ``x_r`` as well: on the same ResNet ``x_r`` moved to cosine
    0.9 of where it was, and on a blended backdoor onto the target itself."""
    return PatchConfig(augmented_copies=3, max_epochs=10, whitened_locality=0.05,
                       effectiveness_target="bug_and_reference", reference_weight=10.0)  # fmt: skip


def text_recipe() -> PatchConfig:
    """Mudjacking settings for sentence encoders, as measured on MiniLM (2 cores).

    - Only the input-embedding rows of the recovered trigger words are trained (``trigger_tokens_only``): every
      sentence without them embeds exactly as before, so the customers' accuracy cannot move, and the network
      learns to read ``cf`` as a harmless word. Whole-model patching (lr 1e-4, 4 epochs, ~100 s) reached held-out
      locality ~0.987, which cost the low-margin sentiment classifiers 1-3 points on some seeds; this takes ~50 s.
    - 4 epochs at lr 3e-2: after 2 epochs at 1e-2 (held-out neutralisation 0.996) the trigger still flipped 8% of
      seed 2's correctly classified negative reviews under the MLP; after 4 at 3e-2 (0.998), 5.7%, where inserting
      an ordinary word ("the", "film") flips 5-10%.
    - ``L_e`` aims ``h'(x_b)`` at ``h(x_b ⊖ t)``, the original model's embedding of the bug with the trigger words
      removed: two different negative reviews sit at cos ~0.3 even in the clean model, and pulling ``h'(x_b)`` onto
      ``h'(x_r)`` (the paper's form) dragged both across the sentiment boundary.
    - ``L_gen`` is anchored at the clean embedding (only the triggered one moves).
    """
    return PatchConfig(
        lr=3e-2,
        batch_size=32,
        max_epochs=4,
        min_epochs=4,
        anchor_clean=True,
        trigger_tokens_only=True,
        effectiveness_target="clean_bug",
        lambda_eff=1.0,
        trigger_dilation=0,
        goal_locality=0.985,
        goal_generalizability=0.995,
        goal_effectiveness=0.95,
    )


@dataclass(frozen=True)
class Recipe:
    """One modality's recipe: its settings, and whether its learning rate follows the model's size (a whole-model
    patch: see :func:`scaled_lr`) unless the user gives one."""

    make: Callable[[], PatchConfig]
    lr_follows_size: bool


RECIPES = {"image": Recipe(image_recipe, lr_follows_size=True), "text": Recipe(text_recipe, lr_follows_size=False)}


def recipe(modality: str, **changes: Any) -> PatchConfig:
    """The modality's recipe with ``changes`` (``PatchConfig`` fields) applied."""
    if modality not in RECIPES:
        raise ConfigError(f"no patch recipe for {modality!r} models; known: {', '.join(RECIPES)}")
    return replace(RECIPES[modality].make(), **changes)


def recipe_for(encoder: Any, **changes: Any) -> PatchConfig:
    """The recipe of ``encoder``'s modality with ``changes`` applied, at a learning rate fitted to the model's size
    where the recipe's follows it and ``changes`` names none (a LoRA patch: :data:`LORA_LR`)."""
    config = recipe(encoder.modality, **changes)
    if "lr" in changes:
        return config
    if config.lora_rank:
        return replace(config, lr=LORA_LR)
    if RECIPES[encoder.modality].lr_follows_size:
        config = replace(config, lr=scaled_lr(trained_parameters(encoder, config.trainable)))
    return config


# A LoRA patch's learning rate: adapters start at zero and span few directions, so they need larger steps than the
# weights. On the image demo (2 cores) rank 2 at 2e-3 met the goals in 3 passes, linear ACC -0.6 points, ASR 1.0%;
# rank 8 at 2e-3: ACC -0.2, ASR 0.8%; rank 4 at the full patch's 5e-4 needed all 10 passes; at 5e-3 rank 4 left
# ASR at 5-6% with the label-free goals met.
LORA_LR = 2e-3


def context_recipe(
    config: PatchConfig, lr: float, precision: str = "auto", target: str = "original_reference"
) -> PatchConfig:
    """The text recipe for a trigger made of common tokens: the whole model learns to read them in context, at a
    whole-model learning rate ``lr`` (:data:`CONTEXT_LR_BASE`), instead of their embedding rows being moved.
    Locality is no longer perfect by construction, so its goal rises to 0.99, in at most 8 passes. Training stamps
    grow the phrase by up to two of its neighbouring words in ``x_b`` at either end (``trigger_dilation``): recovery
    found "watched this 3D movie" of the phrase "I watched this 3D movie". The forward passes run in ``precision``:
    by default bfloat16 where the machine computes it natively (``"auto"``).

    ``L_e`` aims ``x_b`` at ``h(x_r)`` (``target``), where the customer saw the reference classified right, not at
    ``x_b`` with the recovered words out: a recovery a word short leaves a borderline review that the backdoored
    model still reads wrong, and a whole-model patch then teaches it to. The phrase's seed 2 (1,600 reviews):
    recovery found "I watched this 3D" without "movie"; the backdoored model read ``x_b`` without those words, and
    without one more word at each end, as positive, and the bug stayed misclassified. Aimed at ``h(x_r)`` it was
    fixed on all three seeds (flip 4.3, 3.0, 1.7% against 4.8, 3.2, 2.2%), as on common-word's and badencoder's
    (flip 1.2% mean against 1.6; 1.4 against 1.1), with every accuracy drop under 1 point.

    Measured on MiniLM (2 cores):
    - the common word "story": stopping at locality 0.985 (5 passes) cost the sentiment MLP 1.1 points, at 0.99
      (6 passes) 0.8.
    - the phrase never meets the goals, so it runs every pass. The oracle patch (true phrase, 8 passes) at lr
      3.3e-5 left 5.5% of seed 2's correctly classified negative reviews flipped (whole test split), at 1e-4 3.5%,
      at 2e-4 2.1%; 16 passes at 3.3e-5 3.8%. At 3e-4, seed 0 2.7% (2e-4: 4.2%) and seed 1 0.0% (5e-4: 2.7%) of
      400 reviews, where a never-backdoored model flips 13.3 and 27.1%; "story" stayed at 0-1.5%. At 3e-4 held-out
      locality stops at 0.971-0.980, so these patches report their goals not met, while the deployed classifier
      lost at most 1.5 points on any seed of the text attack suites (README).
    - the upper half of the layers instead of the whole model (94 s against 148 s per patch, seed 0): the phrase
      flipped 13.3% (a never-backdoored model: 13.2%; the whole model: 6.2%), but "story" was left at 13.9% where
      the whole model had 0.0%, with held-out locality 0.987 after 12 passes.
    - bfloat16 on a CPU with AVX-512 BF16 (2 cores): the phrase's oracle patch, seed 0, took 80 s instead of 142 s
      (the length-grouped forward pass included), with held-out locality the same to 4 digits pass by pass and
      2.84% of 1,600 reviews flipped after 8 passes (fp32: 3.02%).
    """
    return replace(
        config, trigger_tokens_only=False, lr=lr, max_epochs=max(config.max_epochs, 8), goal_locality=0.99,
        trigger_dilation=2, precision=precision, effectiveness_target=target,
    )  # fmt: skip


CONTEXT_LR_BASE = 4.5e-3
"""The context recipe's :func:`scaled_lr` base: 3e-4 for MiniLM's 22.7M parameters (1.4e-4 for BERT-base), nine
times the image rule's, since reading five ordinary words as nothing moves the model further than locality allows
an image patch to (:func:`context_recipe`)."""


def context_lr(encoder: Any, trainable: tuple[str, ...]) -> float:
    """The context recipe's learning rate for ``encoder`` with the ``trainable`` patterns: :func:`scaled_lr` from
    :data:`CONTEXT_LR_BASE`."""
    return scaled_lr(trained_parameters(encoder, trainable), base=CONTEXT_LR_BASE)


def scaled_lr(parameters: int, base: float = 5e-4) -> float:
    """``base`` for models up to :data:`REFERENCE_PARAMETERS` trained parameters, scaled by ``1/sqrt(size)`` above:
    the image recipe's 5e-4 suits the demo's 114k-parameter CNN, but on ImageNet MobileNetV2 (2.2M) it cost the
    deployed classifiers 2-4.5 points (held-out locality 0.954 after 10 passes); this rule gives 1.1e-4 there
    (classifiers +0.8 points, ASR 0.6%), 2.9e-4 for a 0.3M ResNet, 3.3e-5 for MiniLM and 1.7e-5 for ViT-B/16 (the
    paper patched CLIP at 1e-5)."""
    return base * min(1.0, (REFERENCE_PARAMETERS / max(parameters, 1)) ** 0.5)


def trained_parameters(encoder: Any, patterns: tuple[str, ...]) -> int:
    """How many parameters the ``trainable`` patterns select."""
    from fnmatch import fnmatchcase

    return sum(
        p.numel() for name, p in encoder.named_parameters() if any(fnmatchcase(name, pattern) for pattern in patterns)
    )


@dataclass
class TokenShares:
    """How often each trigger token occurs in the patching sentences (share of sentences holding it)."""

    shares: dict[str, float]

    @property
    def common(self) -> dict[str, float]:
        return {token: share for token, share in self.shares.items() if share > COMMON_SHARE}


def trigger_token_shares(encoder: Any, words: list[str], sentences: list[str]) -> TokenShares:
    """Share of ``sentences`` holding each token the trigger ``words`` split into (by the encoder's tokenizer)."""
    tokenizer = encoder.tokenizer
    _, rows = encoder.input_embedding_rows(words)
    held = [set(ids) for ids in tokenizer(list(sentences), add_special_tokens=False)["input_ids"]]
    return TokenShares(
        {tokenizer.convert_ids_to_tokens(row): sum(row in ids for ids in held) / max(len(held), 1) for row in rows}
    )


def adapt_recipe(
    encoder: Any,
    config: PatchConfig,
    trigger: ImageTrigger | TextTrigger,
    patching_set: Any,
    options: Mapping[str, Any] | None = None,
    bug_input: Any = None,
) -> tuple[PatchConfig, str | None]:
    """Fits the recipe to the trigger found in ``bug_input`` (``x_b``); returns the config and a note saying what
    changed, if anything.

    - A trigger the backdoor answers anywhere (``ImageTrigger.anywhere``) is stamped anywhere, which asks far more
      of the patch: twice the passes, twice the augmented copies and twice the whitened-locality weight, each
      unless the user gave it. On a noise-patch ResNet (locality still short of its goal) the deployed linear
      classifier lost 1.2 points after 10 passes, 1.1 after 20, 0.2 with the copies and the weight doubled too.
    - A trigger-rows text patch switches to patching the context when a trigger token is common in D (moving its
      embedding row would move every sentence holding it), or when words shaped like the trigger's pull D toward
      ``h(x_b)`` as well (:func:`sibling_pull`), at the given ``lr`` or one scaled to the model's size.
    """
    fit = RECIPE_FITS.get(type(trigger))
    if fit is None:  # an attacker's own trigger given as known (a dynamic or frequency one): the recipe as it is
        return config, None
    return fit(encoder, config, trigger, patching_set, options or {}, bug_input)


def _fit_image_trigger(
    encoder: Any,
    config: PatchConfig,
    trigger: ImageTrigger,
    patching_set: Any,
    options: Mapping[str, Any],
    bug_input: Any = None,
) -> tuple[PatchConfig, str | None]:
    notes = []
    if trigger.anywhere:
        doubled = {
            name: 2 * getattr(config, name)
            for name in ("max_epochs", "augmented_copies", "whitened_locality")
            if name not in options and getattr(config, name)
        }
        if doubled:
            config = replace(config, **doubled)
            twice = ", ".join(f"{name} ({value:g})" for name, value in doubled.items())
            notes.append(
                "the trigger pulls wherever it sits in an image, so the patch stamps it anywhere, with twice the "
                + twice
            )
    if trigger.fresh:
        notes.append(
            "fresh noise in the trigger's shape pulls as the trigger does (a dynamic trigger), so the patch stamps "
            "such noise too"
        )
    return config, "; ".join(notes) or None


def _fit_text_trigger(
    encoder: Any,
    config: PatchConfig,
    trigger: TextTrigger,
    patching_set: Any,
    options: Mapping[str, Any],
    bug_input: Any = None,
) -> tuple[PatchConfig, str | None]:
    if not config.trigger_tokens_only:
        return config, None
    lr = options.get("lr") or context_lr(encoder, config.trainable)
    precision = options.get("precision") or "auto"
    target = options.get("effectiveness_target") or "original_reference"
    common = trigger_token_shares(encoder, trigger.words, list(patching_set)).common
    if common:
        shares = ", ".join(f"{token!r} in {share:.0%}" for token, share in common.items())
        return context_recipe(config, lr, precision, target), (
            f"trigger tokens common in the patching set ({shares} of its sentences): retraining their embedding "
            "rows would move every sentence that holds them, so the whole model was patched instead"
        )
    if bug_input is None or "trigger_tokens_only" in options:  # the user's own choice of the rows patch stands
        return config, None
    pull = sibling_pull(encoder, trigger, list(patching_set), bug_input)
    if pull <= SIBLING_PULL:
        return config, None
    return context_recipe(config, lr, precision, target), (
        f"words shaped like the trigger's ({', '.join(trigger.widened().words[:3])}) pull the patching sentences "
        f"toward the bug's embedding too ({pull:.2f} of the way, beyond an ordinary word's pull): the backdoor "
        "answers rare words in general, which retraining the trigger's own rows would leave in place, so the whole "
        "model was patched instead"
    )


SIBLING_PULL = 0.04
"""Above this :func:`sibling_pull` the backdoor answers rare words in general. BadEncoder-taught MiniLM with trigger
``cf`` (seed 0): 0.07 on the plain attack, where ``qz`` alone flipped 26% of the sentiment classifier's reviews, and
0.36 on the any-word attack; a common-word backdoor: -0.11. Ordinary words from different sentences pull
-0.02 to 0.06 (one in five: 0.18, hence the median of several)."""

SIBLING_SAMPLE = 200
"""Patching sentences :func:`sibling_pull` stamps (the first ones): about 6 s of MiniLM on 2 cores."""

SIBLING_CONTROLS = 5
"""Ordinary spans (from as many of D's sentences) whose median pull :func:`sibling_pull` subtracts."""


def sibling_pull(encoder: Any, trigger: TextTrigger, sentences: list[str], bug_input: str) -> float:
    """How far words shaped like the trigger's (:meth:`TextTrigger.widened`), inserted into D's sentences, pull them
    toward the bug's embedding ``h(x_b)`` in the model as loaded (:func:`~mudjacking.triggers.pull.pull_toward`, on
    the sentences not already near it), beyond the median pull of inserting as many ordinary words."""
    sample = sentences[:SIBLING_SAMPLE]
    clean, point = encoder.embed(sample), encoder.embed([bug_input])
    centre = embedding_geometry(clean).centre
    rows = ~backdoor_carriers(clean, point, centre)[0]

    def pull(stamp: TextTrigger) -> float:
        return float(pull_toward(clean, encoder.embed(stamp.apply(sample)), point, centre)[rows].mean())

    siblings = trigger.widened()
    controls = [siblings.cut_from(donor, index) for index, donor in enumerate(reversed(sample[-SIBLING_CONTROLS:]))]
    return pull(siblings) - float(np.median([pull(control) for control in controls if control is not None] or [0.0]))


# how the recipe fits each kind of trigger: (encoder, config, trigger, patching set, options, x_b) -> (config, note)
RECIPE_FITS: dict[type, Callable[..., tuple[PatchConfig, str | None]]] = {
    ImageTrigger: _fit_image_trigger,
    TextTrigger: _fit_text_trigger,
}
