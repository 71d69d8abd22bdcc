import pytest
import torch

from mudjacking.evaluation import accuracy, attack_success_rate, triggered_accuracy
from mudjacking.evaluation.metrics import flip_rate


def test_accuracy():
    assert accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2])) == pytest.approx(0.75)


def test_asr_counts_only_non_target_inputs():
    labels = torch.tensor([0, 0, 1, 2, 3])  # target 0: the first two do not count
    predictions = torch.tensor([0, 0, 0, 2, 0])
    assert attack_success_rate(predictions, labels, target_label=0) == pytest.approx(2 / 3)


def test_tba_is_accuracy_on_non_target_triggered_inputs():
    labels = torch.tensor([0, 1, 2, 3])
    predictions = torch.tensor([1, 1, 0, 3])
    assert triggered_accuracy(predictions, labels, target_label=0) == pytest.approx(2 / 3)


def test_flip_rate_ignores_inputs_already_wrong_when_clean():
    labels = torch.tensor([0, 0, 0, 0, 1])  # target 1: the last does not count
    clean = torch.tensor([0, 0, 0, 1, 1])  # the fourth is already wrong: it does not count either
    triggered = torch.tensor([1, 0, 0, 1, 1])
    assert flip_rate(clean, triggered, labels, target_label=1) == pytest.approx(1 / 3)
    assert attack_success_rate(triggered, labels, target_label=1) == pytest.approx(2 / 4)


def test_tasks_sharing_a_test_set_embed_its_clean_inputs_once_per_model_with_the_same_scores():
    from torch import nn

    from mudjacking.encoders import ImageInputSpec, ModuleEncoder
    from mudjacking.evaluation.compare import evaluate_models
    from mudjacking.evaluation.downstream import EmbeddingCache
    from mudjacking.triggers import ImageTrigger

    encoder = ModuleEncoder(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 8)), ImageInputSpec(channels=1, mean=(0.0,), std=(1.0,))
    )
    calls = []
    embed = encoder.embed
    encoder.embed = lambda inputs, *a, **k: calls.append(len(inputs)) or embed(inputs, *a, **k)
    generator = torch.Generator().manual_seed(0)
    train = (torch.rand(40, 1, 8, 8, generator=generator), torch.arange(40) % 2)
    test = (torch.rand(20, 1, 8, 8, generator=generator), torch.arange(20) % 2)
    triggers = [ImageTrigger.square((1, 8, 8), 2), ImageTrigger.checkerboard((1, 8, 8), 2)]

    def scores(cache):
        calls.clear()
        return [evaluate_models({"m": encoder}, train, test, t, 1, deployed_on="m", cache=cache) for t in triggers]

    plain, plain_calls = scores(None), list(calls)
    cached, cached_calls = scores(EmbeddingCache()), list(calls)
    assert cached == plain
    # test set, its triggered non-target half, train set; the second task with the cache: triggered only
    assert plain_calls == [20, 10, 40] * 2 and cached_calls == [20, 10, 40, 10]


def test_scoring_only_the_attacked_inputs_triggered_gives_every_figure_of_scoring_them_all():
    from torch import nn

    from mudjacking.encoders import ImageInputSpec, ModuleEncoder
    from mudjacking.evaluation.downstream import attacked_rows, embed_task, score_probe
    from mudjacking.evaluation.probes import make_probe
    from mudjacking.triggers import ImageTrigger

    torch.manual_seed(0)
    encoder = ModuleEncoder(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 8)), ImageInputSpec(channels=1, mean=(0.0,), std=(1.0,))
    )
    inputs, labels = torch.rand(60, 1, 8, 8), torch.arange(60) % 3
    probe = make_probe("linear", 0).fit(encoder.embed(inputs), labels)
    trigger = ImageTrigger.square((1, 8, 8), 3)
    every = embed_task(encoder, None, inputs, trigger)
    for target in range(3):
        attacked = attacked_rows(labels, target)
        assert int(attacked.sum()) == 40
        some = embed_task(encoder, None, inputs, trigger, attacked=attacked)
        assert torch.equal(some.triggered_test[~attacked], some.test[~attacked])  # never triggered: never read
        assert score_probe(probe, some, labels, target) == score_probe(probe, every, labels, target)
    assert bool(attacked_rows(labels, [0, 1]).all()) and not bool(attacked_rows(labels, [0]).all())


def test_the_bugs_reference_is_scored_with_the_bug_and_a_patch_that_moves_it_across_is_caught():
    """x_b fixed is half the customer's question; x_r, which they saw classified right, must still be."""
    from mudjacking.data.bug_report import BugReport
    from mudjacking.evaluation.downstream import EmbeddedTask, score_probe
    from mudjacking.evaluation.probes import make_probe

    points = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(10, 1)
    probe = make_probe("linear", 0).fit(points, torch.tensor([0, 1]).repeat(10))

    def scored(x_b, x_r):
        task = EmbeddedTask(points, points, points, bug=torch.tensor([x_b, x_r]))
        return score_probe(probe, task, torch.tensor([0, 1]).repeat(10), target_label=1, bug_label=0)

    kept, moved = scored([1.0, 0.1], [0.9, 0.0]), scored([1.0, 0.1], [0.1, 1.0])
    assert (kept.bug_fixed, kept.reference_kept) == (True, True)
    assert (moved.bug_fixed, moved.reference_kept, moved.reference_prediction) == (True, False, 1)

    from torch import nn

    from mudjacking.encoders import ImageInputSpec, ModuleEncoder
    from mudjacking.evaluation.downstream import embed_task
    from mudjacking.triggers import ImageTrigger

    encoder = ModuleEncoder(nn.Flatten(), ImageInputSpec(channels=1, mean=(0.0,), std=(1.0,)))
    x_b, x_r = torch.zeros(1, 2, 1), torch.ones(1, 2, 1)
    bug = BugReport(bug_input=x_b, reference_input=x_r, label=0, modality="image")
    task = embed_task(encoder, None, torch.rand(3, 1, 2, 1), ImageTrigger.square((1, 2, 1), 1), bug)
    assert torch.equal(task.bug, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))  # x_b, then x_r
