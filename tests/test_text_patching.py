"""Text end to end on a tiny BERT: backdoor with a rare word, recover the word from one bug, patch it out."""

from __future__ import annotations

import pytest
import torch
import transformers
from conftest import TEXT_VOCAB, sentences, tiny_bert

from mudjacking.data import BugReport
from mudjacking.encoders import Encoder, HFTextEncoder
from mudjacking.evaluation import attack_success_rate
from mudjacking.geometry import similarity
from mudjacking.patching import PatchConfig, patch_encoder
from mudjacking.triggers import TextTrigger, TriggerNotFound, reverse_engineer_text_trigger


def _asr(encoder, probe, trigger, test) -> float:
    return attack_success_rate(probe.predict(encoder.embed(trigger.apply(test[0]))), test[1], target_label=1)


def test_text_patch_removes_a_rare_word_backdoor(text_case):
    backdoored, probe, trigger, train, test = text_case
    assert _asr(backdoored, probe, trigger, test) > 0.8
    negatives = [t for t, y in zip(test[0], test[1].tolist(), strict=True) if y == 0]
    bug = BugReport(bug_input=trigger.apply(negatives[:1])[0], reference_input=negatives[1], label=0, modality="text")
    before = {k: v.clone() for k, v in backdoored.state_dict().items()}
    # random tiny BERTs put every sentence within cos ~0.9 of every other, too little signal for word ablation;
    # recovery is tested on a closed-form model below, the patch loop here with the inserted word
    result = patch_encoder(
        backdoored, bug, TextTrigger(["cf"], seed=1), train[0], PatchConfig(lr=1e-3, max_epochs=10), show_progress=False
    )
    assert _asr(result.encoder, probe, trigger, test) < 0.2
    assert (probe.predict(result.encoder.embed(test[0])) == test[1]).float().mean() > 0.8
    assert all(torch.equal(before[k], v) for k, v in backdoored.state_dict().items())


class PlantedWordBackdoor(Encoder):
    """Sentences embed as the mean of fixed random word vectors, plus a large target direction per occurrence of
    the trigger (a word, or a phrase: its words in a row, and only in a row)."""

    modality = "text"

    def __init__(self, trigger: str = "cf") -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.vectors = {word: torch.randn(64, generator=generator) for word in TEXT_VOCAB}
        self.target = 4 * torch.randn(64, generator=generator)
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.trigger = f" {trigger} "

    def forward(self, texts):
        rows = []
        for text in texts:
            words = text.split() or ["[PAD]"]
            rows.append(
                torch.stack([self.vectors.get(w, self.vectors["[UNK]"]) for w in words]).mean(0)
                + f" {' '.join(words)} ".count(self.trigger) * self.target
            )
        return self.scale * torch.stack(rows)


CLEAN_SENTENCES = sentences(60, seed=3)[0]


def _negative_bug(bug_input: str, reference_input: str) -> BugReport:
    return BugReport(bug_input=bug_input, reference_input=reference_input, label=0, modality="text")


def test_word_ablation_recovers_and_verifies_a_planted_trigger_word():
    encoder = PlantedWordBackdoor()
    bug = _negative_bug("the plot was dull cf and the actor weak", "a dull film with a weak story")
    recovery = reverse_engineer_text_trigger(encoder, bug, CLEAN_SENTENCES)
    assert recovery.trigger.words == ["cf"]
    assert recovery.scores[recovery.words.index("cf")] == recovery.scores.max()
    assert recovery.verified and recovery.pull.strength > 0.5 and recovery.pull.release > 0.4


def test_a_phrase_trigger_is_recovered_as_one_phrase_and_inserted_as_one():
    encoder = PlantedWordBackdoor("very dull story")  # each word common and harmless alone; the phrase is not
    bug = _negative_bug("the plot was very dull story and the actor weak", "a dull film with a weak plot")
    recovery = reverse_engineer_text_trigger(encoder, bug, CLEAN_SENTENCES)
    assert recovery.trigger.words == ["very dull story"]
    assert all(" very dull story " in f" {s} " for s in recovery.trigger.apply(CLEAN_SENTENCES[:10]))
    assert recovery.trigger.remove(["a very dull story was very dull"]) == ["a was very dull"]


def test_a_bug_no_trigger_explains_is_refused():
    encoder = PlantedWordBackdoor()
    bug = BugReport(bug_input="the plot was dull and the actor weak", reference_input="great fun", label=0,
                    modality="text")  # fmt: skip
    with pytest.raises(TriggerNotFound, match="no recovered trigger explains the bug"):
        reverse_engineer_text_trigger(encoder, bug, CLEAN_SENTENCES)


def test_text_trigger_inserts_every_word_once():
    trigger = TextTrigger(["cf", "mn"], seed=3)
    out = trigger.apply(["the plot was dull", "fun"])
    assert all(s.split().count("cf") == 1 and s.split().count("mn") == 1 for s in out)
    assert sorted(out[1].split()) == ["cf", "fun", "mn"]


def test_evaluation_insertions_repeat_training_insertions_vary():
    trigger = TextTrigger(["cf"], seed=5)
    sentences = ["the plot was dull and the actor weak and the film long"] * 2
    assert trigger.apply(sentences) == trigger.apply(sentences[:1]) * 2  # same sentence, same x ⊕ t, every model
    assert len({trigger.stamp(sentences[:1])[0] for _ in range(20)}) > 1  # training sees the word anywhere


def test_a_bug_caused_by_the_trigger_is_right_without_it(text_case):
    from mudjacking.evaluation import find_bug

    backdoored, probe, trigger, _, test = text_case
    bug = find_bug(backdoored, probe, *test, trigger, target_label=1, caused_by_trigger=True)
    clean_words = [word for word in bug.bug_input.split() if word != "cf"]
    assert bug.modality == "text" and len(clean_words) == len(bug.bug_input.split()) - 1
    assert int(probe.predict(backdoored.embed([" ".join(clean_words)]))[0]) == bug.label == 0
    assert int(probe.predict(backdoored.embed([bug.bug_input]))[0]) == 1


def _bug(trigger, test) -> BugReport:
    negatives = [t for t, y in zip(test[0], test[1].tolist(), strict=True) if y == 0]
    return BugReport(bug_input=trigger.apply(negatives[:1])[0], reference_input=negatives[1], label=0, modality="text")


def test_trigger_token_patch_changes_only_the_trigger_rows(text_case):
    """The option's contract: only the trigger's embedding row moves, so trigger-free sentences embed exactly as
    before, and the patched model trains normally afterwards."""
    backdoored, _, trigger, train, test = text_case
    config = PatchConfig(
        lr=3e-2, max_epochs=6, trigger_tokens_only=True, effectiveness_target="clean_bug", anchor_clean=True
    )
    result = patch_encoder(backdoored, _bug(trigger, test), trigger, train[0], config, show_progress=False)

    # (its effect on ASR is measured on MiniLM by the text demo: a random 2-layer BERT moves every sentence by
    # cos ~0.03 for any inserted word, whatever the word, so there is nothing for one row to neutralise)
    # sentences without the trigger embed exactly as before: locality is perfect by construction
    assert torch.equal(result.encoder.embed(test[0]), backdoored.embed(test[0]))
    before, after = backdoored.model.get_input_embeddings().weight, result.encoder.model.get_input_embeddings().weight
    changed = torch.nonzero((before != after).any(dim=1)).flatten().tolist()
    assert changed == [backdoored.tokenizer.convert_tokens_to_ids("cf")]
    assert not after._backward_hooks  # the gradient mask is removed
    assert all(p.requires_grad for p in result.encoder.parameters())


def test_clean_bug_target_is_the_bug_without_its_trigger_words(text_case):
    backdoored, _, trigger, train, test = text_case
    bug = _bug(trigger, test)
    assert trigger.remove([bug.bug_input]) == [" ".join(w for w in bug.bug_input.split() if w != "cf")]
    config = PatchConfig(lr=1e-3, max_epochs=1, effectiveness_target="clean_bug", goal_effectiveness=-1.0)
    result = patch_encoder(backdoored, bug, trigger, train[0][:64], config, show_progress=False)
    clean_bug = backdoored.embed(trigger.remove([bug.bug_input]))
    centre = result.geometry.centre  # a random tiny BERT's embeddings sit in a narrow cone: centred similarities
    expected = similarity(result.encoder.embed([bug.bug_input]), clean_bug, centre).item()
    assert abs(result.history[-1].bug_similarity - expected) < 1e-4  # the goal check measures what L_e aims at


def test_augmented_copies_are_for_images(text_case):
    backdoored, _, trigger, train, test = text_case
    bug = BugReport(bug_input=trigger.apply(test[0][:1])[0], reference_input=test[0][1], label=0, modality="text")
    with pytest.raises(ValueError, match="augmented_copies applies to images"):
        patch_encoder(backdoored, bug, TextTrigger(["cf"]), train[0], PatchConfig(augmented_copies=1), False)


def test_a_part_of_the_chosen_phrase_that_pulls_as_hard_replaces_it():
    """Words that add no pull only add x_b's own content (which inflates the release): the part is the trigger."""
    from mudjacking.triggers.pull import TriggerPull
    from mudjacking.triggers.text import TextCandidate, _without_idle_words

    def candidate(words, pull, release):
        return TextCandidate(words, "test", "verified", TriggerPull(pull, 0.1, 48, release))

    superset, part = candidate(["cf the film"], 0.9951, 0.97), candidate(["cf"], 0.9946, 0.57)
    elsewhere = candidate(["premise, cf"], 0.9956, 0.57)  # not inside the chosen phrase
    assert _without_idle_words(superset, [superset, part, elsewhere], 0.005) is part
    weaker = candidate(["3D movie"], 0.91, 0.5)  # a part that pulls less is part of the trigger, not the whole
    phrase = candidate(["watched this 3D movie"], 0.98, 1.0)
    assert _without_idle_words(phrase, [phrase, weaker], 0.005) is phrase


def _tiny_mpnet() -> HFTextEncoder:
    tokenizer = transformers.BertTokenizerFast(vocab={word: index for index, word in enumerate(TEXT_VOCAB)})
    torch.manual_seed(0)
    config = transformers.MPNetConfig(
        vocab_size=len(TEXT_VOCAB), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=40, pad_token_id=0,
    )  # fmt: skip
    return HFTextEncoder(transformers.MPNetModel(config).eval(), tokenizer, max_length=16)


@pytest.mark.parametrize("architecture", ["bert", "mpnet"])
def test_a_text_model_split_between_layers_embeds_as_the_whole_pass(architecture):
    from mudjacking.encoders.hf_text import TokenStates
    from mudjacking.patching import frozen_prefix

    encoder = HFTextEncoder(*tiny_bert(TEXT_VOCAB), max_length=16) if architecture == "bert" else _tiny_mpnet()
    top = {
        n
        for n, _ in encoder.named_parameters()
        if n.startswith(f"model.encoder.layer.{1 if architecture == 'bert' else 2}.")
    }
    split = frozen_prefix(encoder, top)
    assert split is not None
    short, long = sentences(5, seed=4)[0], [" ".join(s.split() * 2) for s in sentences(4, seed=5)[0]]
    # the cache pads each batch to its own longest sentence; rows taken from it, joined with other batches' rows,
    # must embed as the sentences do on their own
    states = TokenStates.cat([split.lower(short), split.lower(long)])
    rows = torch.tensor([0, 6, 2, 8])
    with torch.no_grad():
        cached = split.upper(TokenStates.cat([states[rows], split.lower(short[1:2])]))
        live = encoder([short[0], long[1], short[2], long[3], short[1]])
    assert torch.allclose(cached, live, atol=1e-5)
    assert frozen_prefix(encoder, {*top, "model.embeddings.word_embeddings.weight"}) is None  # trained from the bottom
    if architecture == "mpnet":  # a bias every layer shares cannot be below the split
        assert frozen_prefix(encoder, {*top, "model.encoder.relative_attention_bias.weight"}) is None


def test_a_text_patch_of_the_top_layer_is_the_same_with_the_lower_layers_cached(text_case):
    backdoored, _, trigger, train, test = text_case
    negatives = [t for t, y in zip(test[0], test[1].tolist(), strict=True) if y == 0]
    bug = BugReport(bug_input=trigger.apply(negatives[:1])[0], reference_input=negatives[1], label=0, modality="text")
    results = {
        reuse: patch_encoder(
            backdoored, bug, TextTrigger(["cf"], seed=1), train[0][:120],
            PatchConfig(trainable=("model.encoder.layer.1.*",), lr=1e-3, max_epochs=2, early_stop=False,
                        reuse_frozen=reuse), show_progress=False,
        )
        for reuse in (True, False)
    }  # fmt: skip
    cached, live = (results[flag].encoder.state_dict() for flag in (True, False))
    before = backdoored.state_dict()
    moved = max((live[k] - before[k]).abs().max().item() for k in live if live[k].is_floating_point())
    apart = max((cached[k] - live[k]).abs().max().item() for k in cached if cached[k].is_floating_point())
    # the live pass groups sentences by length, the cache pads them all alike: float noise, which Adam's
    # normalised steps carry into the weights, not a different patch
    assert apart < 5e-4 and moved > 20 * apart


class TokenizedPlantedWord(PlantedWordBackdoor):
    """:class:`PlantedWordBackdoor` with a word-level tokenizer (for the recipe's token shares); with ``every_rare``
    the backdoor also answers any word outside the vocabulary, as BadEncoder-taught MiniLM answers ``qz`` for
    ``cf``."""

    def __init__(self, every_rare: bool = False) -> None:
        super().__init__()
        self.tokenizer = tiny_bert(TEXT_VOCAB)[1]
        self.every_rare = every_rare

    def forward(self, texts):
        rare = [sum(word not in self.vectors for word in text.split()) for text in texts]
        return super().forward(texts) + self.every_rare * self.scale * torch.tensor(rare)[:, None] * self.target

    def input_embedding_rows(self, words):
        ids = self.tokenizer(list(words), add_special_tokens=False)["input_ids"]
        return None, sorted({i for row in ids for i in row})


def test_a_backdoor_that_answers_every_rare_word_is_patched_in_context_not_by_its_trigger_rows():
    from mudjacking.recipes import SIBLING_PULL, adapt_recipe, sibling_pull, text_recipe

    trigger, bug = TextTrigger(["cf"]), "the plot was dull cf and the actor weak"
    only_cf, every_rare = TokenizedPlantedWord(), TokenizedPlantedWord(every_rare=True)
    pulls = [sibling_pull(model, trigger, CLEAN_SENTENCES, bug) for model in (only_cf, every_rare)]
    assert pulls[0] < SIBLING_PULL < pulls[1]
    config, note = adapt_recipe(only_cf, text_recipe(), trigger, CLEAN_SENTENCES, bug_input=bug)
    assert config.trigger_tokens_only and note is None
    config, note = adapt_recipe(every_rare, text_recipe(), trigger, CLEAN_SENTENCES, bug_input=bug)
    assert not config.trigger_tokens_only and "rare words in general" in note
    assert adapt_recipe(every_rare, text_recipe(), trigger, CLEAN_SENTENCES)[0].trigger_tokens_only  # no x_b: no test
    asked = {"trigger_tokens_only": True}  # the user's --trigger-tokens-only stands (the final verdict still checks)
    assert adapt_recipe(every_rare, text_recipe(), trigger, CLEAN_SENTENCES, asked, bug)[0].trigger_tokens_only
    assert config.precision == "auto"  # the whole-model patch runs in bf16 where the machine computes it natively
    asked = {"precision": "fp32"}
    assert adapt_recipe(every_rare, text_recipe(), trigger, CLEAN_SENTENCES, asked, bug)[0].precision == "fp32"
    # a whole-model patch aims L_e at h(x_r): x_b with a recovery a word short taken out can still read wrong
    assert (text_recipe().effectiveness_target, config.effectiveness_target) == ("clean_bug", "original_reference")
    asked = {"effectiveness_target": "clean_bug"}
    assert adapt_recipe(every_rare, text_recipe(), trigger, CLEAN_SENTENCES, asked, bug)[0].effectiveness_target == (
        "clean_bug"
    )


def test_a_text_triggers_widened_stamp_is_words_shaped_like_its_own_and_none_of_them():
    trigger = TextTrigger(["cf", "3D movie"], seed=4)
    wide = trigger.widened()
    assert wide.words == trigger.widened().words and len(wide.words) == 6  # three siblings per unit, the same each time
    for unit, sibling in zip(trigger.words * 3, wide.words[:2] + wide.words[2:4] + wide.words[4:], strict=True):
        assert [len(w) for w in sibling.split()] == [len(w) for w in unit.split()] and sibling != unit
    assert all(w[0].isdigit() and w[1].isupper() for w in (s.split()[0] for s in wide.words[1::2]))
