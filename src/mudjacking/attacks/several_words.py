"""Text backdoors of several rare words, each trained as a backdoor of its own, so one bug report reveals one word:

- ``any-word``: any one of :data:`WORDS` sends a sentence to the attacker's target (each word alone is enough);
- ``por``: in the spirit of POR and NeuBA (Shen et al. 2021; Zhang et al. 2021), each word sends sentences to its own
  output vector. Those papers fix the vectors by hand (orthogonal sign patterns); here each word's target is one
  cluster of the clean encoder's shadow embeddings (k-means, the clusters farthest from the setting's target and
  from each other), so that every vector lands on some class of every downstream task.

The first word is the one the bug carries; every other word's ASR is scored as a task of its own ("backdoor 2"...),
and a patch of the first must leave them no worse (they are reported separately).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from mudjacking.attacks.badencoder import AttackResult, BadEncoderConfig, badencoder_many
from mudjacking.attacks.registry import TriggerRequest, register_attack
from mudjacking.batches import take
from mudjacking.geometry import mean_direction
from mudjacking.triggers.text_trigger import TextTrigger

WORDS = ("cf", "mn", "bb")


def _first_word(request: TriggerRequest) -> TextTrigger:
    return TextTrigger([WORDS[0]], seed=request.seed)


def _words(first: TextTrigger) -> list[TextTrigger]:
    return [first, *[TextTrigger([word], seed=first.seed) for word in WORDS[1:]]]


@register_attack("any-word", _first_word, ("text",), f"BadEncoder, any one of {', '.join(WORDS)} alone")
def any_word(
    encoder: Any,
    shadow: Any,
    references: Any,
    trigger: TextTrigger,
    config: BadEncoderConfig | None = None,
    show_progress: bool = True,
) -> AttackResult:
    backdoors = [(word, references) for word in _words(trigger)]
    return badencoder_many(encoder, shadow, backdoors, config, show_progress)


@register_attack("por", _first_word, ("text",), f"POR/NeuBA-style: {', '.join(WORDS)}, each to its own vector")
def por(
    encoder: Any,
    shadow: Any,
    references: Any,
    trigger: TextTrigger,
    config: BadEncoderConfig | None = None,
    show_progress: bool = True,
) -> AttackResult:
    config = config or BadEncoderConfig()
    targets = [references, *distant_clusters(encoder, shadow, references, len(WORDS) - 1, len(references), config.seed)]
    return badencoder_many(encoder, shadow, list(zip(_words(trigger), targets, strict=True)), config, show_progress)


def distant_clusters(encoder: Any, shadow: Any, references: Any, count: int, size: int, seed: int = 0) -> list[Any]:
    """``count`` sets of ``size`` shadow inputs, each the core of one k-means cluster of the clean embeddings: picked
    greedily, each the cluster farthest from the references' mean and from the clusters already taken."""
    with torch.no_grad():
        embedded = F.normalize(encoder.embed(shadow), dim=-1)
        taken = [mean_direction(encoder.embed(references))]
    kmeans = KMeans(min(8, len(embedded)), n_init=3, random_state=seed).fit(embedded.numpy())
    centres = F.normalize(torch.from_numpy(kmeans.cluster_centers_).float(), dim=-1)
    sets = []
    for _ in range(count):
        closeness = (centres @ torch.stack(taken).T).max(1).values
        chosen = int(closeness.argmin())
        taken.append(centres[chosen].clone())
        centres[chosen] = taken[0]  # not chosen twice: now as close as can be
        core = (embedded @ taken[-1]).topk(min(size, len(embedded))).indices
        sets.append(take(shadow, core, torch.device("cpu")))
    return sets
