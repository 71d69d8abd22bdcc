"""BadEncoder with triggers that test what Mudjacking assumes about triggers: that one bug shows the trigger as a
compact region (or a few rare words) at the place it will always sit.

Each registers under its own name with the trigger it brings; the attack itself is BadEncoder's objective.

- ``tiny-trigger``: a 2x2 white square (a handful of pixels for occlusion to find).
- ``large-trigger``: a white square covering ~10 % of the image.
- ``checkerboard``: a 5x5 black-and-white checkerboard (half its pixels are dark, like much of the image).
- ``blended``: a fixed noise image blended into the whole input at α = 0.15 (no compact region at all).
- ``random-location``: the 5x5 checkerboard stamped anywhere, so ``x_b`` shows it at one place of many.
- ``random-noise``: a dynamic trigger, a 5x5 square of fresh black-and-white noise at a random place in every
  input, so ``x_b`` shows one draw of a pattern no other input carries.
- ``frequency``: a CTRL-style perturbation of the image's spectrum (:mod:`mudjacking.triggers.frequency`), on every
  pixel and invisible.
- ``phrase``: a five-word phrase inserted as one span (text).
- ``common-word``: the common word "story" (text): its embedding row is read by ordinary sentences too.
"""

from __future__ import annotations

import math
from dataclasses import replace

from mudjacking.attacks.badencoder import badencoder
from mudjacking.attacks.registry import TriggerRequest, register_attack
from mudjacking.triggers.frequency import FrequencyTrigger
from mudjacking.triggers.text_trigger import TextTrigger
from mudjacking.triggers.trigger import ImageTrigger, RandomPatchTrigger

PHRASE, COMMON_WORD = "I watched this 3D movie", "story"
BLEND_ALPHA, LARGE_SHARE = 0.15, 0.10


def _tiny(request: TriggerRequest) -> ImageTrigger:
    return ImageTrigger.square(request.input_shape, 2)


def _large(request: TriggerRequest) -> ImageTrigger:
    height, width = request.input_shape[1:]
    return ImageTrigger.square(request.input_shape, round(math.sqrt(LARGE_SHARE * height * width)))


def _checkerboard(request: TriggerRequest) -> ImageTrigger:
    return ImageTrigger.checkerboard(request.input_shape, 5)


def _blended(request: TriggerRequest) -> ImageTrigger:
    return ImageTrigger.blended(request.input_shape, BLEND_ALPHA, request.seed)


def _anywhere(request: TriggerRequest) -> ImageTrigger:
    # a white square is invisible on a white garment, and was learnt on 52% of placements only (5 attack epochs)
    return replace(ImageTrigger.checkerboard(request.input_shape, 5), anywhere=True)


def _random_noise(request: TriggerRequest) -> RandomPatchTrigger:
    return RandomPatchTrigger(5, request.seed, request.input_shape)


def frequency_trigger(request: TriggerRequest) -> FrequencyTrigger:
    return FrequencyTrigger.ctrl(request.input_shape)


def _phrase(request: TriggerRequest) -> TextTrigger:
    return TextTrigger([PHRASE], seed=request.seed)


def _common_word(request: TriggerRequest) -> TextTrigger:
    return TextTrigger([COMMON_WORD], seed=request.seed)


IMAGE_VARIANTS = {
    "tiny-trigger": (_tiny, "BadEncoder, a 2x2 white square"),
    "large-trigger": (_large, "BadEncoder, a white square over ~10% of the image"),
    "checkerboard": (_checkerboard, "BadEncoder, a 5x5 black-and-white checkerboard"),
    "blended": (_blended, f"BadEncoder, a noise image blended in at alpha {BLEND_ALPHA}"),
    "random-location": (_anywhere, "BadEncoder, a 5x5 checkerboard stamped anywhere"),
    "frequency": (frequency_trigger, "BadEncoder, a CTRL-style perturbation of the image's spectrum"),
    "random-noise": (_random_noise, "BadEncoder, a 5x5 square of fresh noise anywhere in every input"),
}
TEXT_VARIANTS = {
    "phrase": (_phrase, f"BadEncoder, the phrase {PHRASE!r} as the trigger"),
    "common-word": (_common_word, f"BadEncoder, the common word {COMMON_WORD!r} as the trigger"),
}
for name, (trigger, about) in IMAGE_VARIANTS.items():
    register_attack(name, trigger, ("image",), about)(badencoder)
for name, (trigger, about) in TEXT_VARIANTS.items():
    register_attack(name, trigger, ("text",), about)(badencoder)
