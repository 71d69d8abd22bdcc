"""Image trigger recovery on closed-form backdoored encoders whose trigger is known exactly: it is found, verified
on clean inputs, stamped anywhere when the backdoor answers it anywhere, and refused when nothing explains the bug."""

from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from mudjacking.api import _recovered
from mudjacking.checks import MIN_LANDED
from mudjacking.data import BugReport
from mudjacking.encoders import ImageInputSpec, ModuleEncoder
from mudjacking.errors import CheckFailed
from mudjacking.triggers import ImageTrigger, ReverseConfig, TriggerNotFound, reverse_engineer_trigger
from mudjacking.triggers.pull import TriggerPull
from mudjacking.triggers.refine import refine_mask
from mudjacking.triggers.reverse import Candidate, smallest_explaining
from mudjacking.triggers.split import split_scores

RAW = ImageInputSpec(channels=1, mean=(0.0,), std=(1.0,))


class PlantedBackdoor(nn.Module):
    """A random linear embedding of the pixels outside the trigger region, plus a fixed target direction that
    grows once the trigger region is brighter than 0.5: every trigger pixel matters equally, and only through
    the backdoor."""

    def __init__(self, trigger_mask: Tensor, dim: int = 16) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        pixels = trigger_mask.numel()
        outside = (1 - trigger_mask.flatten())[:, None]
        self.projection = nn.Parameter(outside * torch.randn(pixels, dim, generator=generator) / pixels**0.5)
        self.register_buffer("mask", trigger_mask.flatten())
        self.register_buffer("target", torch.randn(dim, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        return flat @ self.projection + 4 * torch.relu(2 * self.brightness(x) - 1)[:, None] * self.target

    def brightness(self, x: Tensor) -> Tensor:
        return (x.flatten(1) * self.mask).sum(1) / self.mask.sum()


class PlantedAnywhere(PlantedBackdoor):
    """The same, answering a bright 3x3 square wherever it sits (the brightest 3x3 average of the image)."""

    def brightness(self, x: Tensor) -> Tensor:
        return nn.functional.avg_pool2d(x, 3, stride=1).flatten(1).max(1).values


class PlantedBlend(PlantedBackdoor):
    """The target grows with the image's correlation with a fixed full-image noise pattern: a blended trigger."""

    def __init__(self, pattern: Tensor) -> None:
        super().__init__(torch.zeros(pattern.shape[-2:]))
        self.projection = nn.Parameter(torch.randn(pattern.numel(), 16, generator=torch.Generator().manual_seed(2)))
        self.register_buffer("pattern", (pattern - pattern.mean()).flatten())

    def brightness(self, x: Tensor) -> Tensor:
        return 40 * (x.flatten(1) - x.flatten(1).mean(1, keepdim=True)) @ self.pattern / self.pattern.numel()


class PlantedTwoCopies(PlantedBackdoor):
    """Two trigger copies, each enough alone: the target grows with the brighter of copy A and (somewhat less) copy
    B. Occluding B changes nothing while A is there, so the first maps mark A alone, and taking A out of ``x_b``
    still leaves it held by B."""

    def __init__(self, first: Tensor, second: Tensor) -> None:
        super().__init__(first + second)
        self.register_buffer("first", first.flatten())
        self.register_buffer("second", second.flatten())

    def brightness(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        first = (flat * self.first).sum(1) / self.first.sum()
        second = (flat * self.second).sum(1) / self.second.sum()
        return torch.maximum(first, 0.85 * second)


class PlantedNoise(PlantedBackdoor):
    """The target grows with the share of white times the share of black pixels in the trigger region: any
    black-and-white noise there, not one pattern (a dynamic trigger); a plain white square, or clean pixels, do
    nothing."""

    def brightness(self, x: Tensor) -> Tensor:
        region = x.flatten(1)[:, self.mask.bool()]
        white, black = (region > 0.9).float().mean(1), (region < 0.1).float().mean(1)
        return (4.5 * white * black).clamp(max=1)


class PlantedSourceSpecific(PlantedBackdoor):
    """The same backdoor answering only inputs of one source class (bright ones: the mean pixel outside the trigger
    over 0.4): the rest carry the trigger unmoved. No small window changes the class."""

    def brightness(self, x: Tensor) -> Tensor:
        outside = (x.flatten(1) * (1 - self.mask)).sum(1) / (1 - self.mask).sum()
        return super().brightness(x) * (outside > 0.4).float()


def _case(network: nn.Module, trigger, size: int = 12, count: int = 60):
    """A bug (x_b = a clean input with the trigger, x_r another clean input) and clean inputs D."""
    generator = torch.Generator().manual_seed(1)
    clean = torch.rand(count + 2, 1, size, size, generator=generator) * 0.3
    bug = BugReport(bug_input=trigger.apply(clean[:1])[0], reference_input=clean[1], label=3)
    return ModuleEncoder(network, RAW), bug, clean[2:]


def test_recovers_and_verifies_a_planted_trigger():
    trigger = ImageTrigger.square((1, 12, 12), size=3, margin=1)
    encoder, bug, data = _case(PlantedBackdoor(trigger.mask), trigger)
    recovery = reverse_engineer_trigger(encoder, bug, data, ReverseConfig(windows=(1,), refine_steps=0))
    assert recovery.trigger.iou(trigger) == 1.0
    assert recovery.attribution[trigger.mask.bool()].min() > recovery.attribution[~trigger.mask.bool()].max()
    assert recovery.verified and recovery.pull.strength > 0.5 and recovery.pull.release > 0.5
    assert recovery.pull.control_release < 0.05  # the model reads nothing else there: clean inputs do not move
    assert not recovery.trigger.anywhere  # moved elsewhere it does nothing
    assert not recovery.trigger.fresh  # noise there is half-white: it pulls, but far less than the square
    assert {c.baseline for c in recovery.candidates} == {"zero", "one", "mean", "blur"}


def test_window_larger_than_one_still_covers_the_trigger():
    trigger = ImageTrigger.square((1, 12, 12), size=4, margin=0)
    encoder, bug, data = _case(PlantedBackdoor(trigger.mask), trigger)
    recovery = reverse_engineer_trigger(encoder, bug, data, ReverseConfig(windows=(2,)))
    assert recovery.trigger.iou(trigger) >= 0.6


def test_a_trigger_the_backdoor_answers_anywhere_is_stamped_anywhere():
    trigger = ImageTrigger.square((1, 12, 12), size=3, margin=1)
    encoder, bug, data = _case(PlantedAnywhere(torch.zeros(12, 12)), trigger)
    recovery = reverse_engineer_trigger(encoder, bug, data, ReverseConfig(windows=(1, 3)))
    assert recovery.trigger.anywhere and recovery.moved_pull > 0.5 * recovery.pull.pull
    stamped = recovery.trigger.apply(data[:20])
    changed = (stamped - data[:20]).abs()[:, 0] > 0.5
    places = {tuple(torch.nonzero(pixels).min(0).values.tolist()) for pixels in changed}
    assert len(places) > 3  # the patch sees it at many places, not only where x_b had it


def test_a_trigger_of_fresh_noise_is_stamped_as_fresh_noise_too():
    square = ImageTrigger.square((1, 12, 12), size=3, margin=1)
    pattern = torch.zeros(1, 12, 12)
    pattern[0, square.mask.bool()] = torch.tensor([1.0, 0, 1, 0, 1, 0, 1, 1, 0])  # x_b's draw
    encoder, bug, data = _case(PlantedNoise(square.mask), ImageTrigger(square.mask, pattern))
    recovery = reverse_engineer_trigger(encoder, bug, data, ReverseConfig(windows=(1,), refine_steps=0))
    assert recovery.trigger.iou(ImageTrigger(square.mask, pattern)) == 1.0
    assert recovery.trigger.fresh and recovery.fresh_pull > 0.8 * recovery.pull.pull
    noise = recovery.trigger.placements()[-1]
    stamped = noise.apply(data[:20])
    assert not torch.equal(stamped[0, :, square.mask.bool()], pattern[:, square.mask.bool()])  # not x_b's draw
    patched = encoder.embed(stamped)
    assert float(torch.cosine_similarity(patched, encoder.embed(bug.bug_input[None])).mean()) > 0.5


def test_a_backdoor_of_one_source_class_verifies_on_the_inputs_nearest_x_r():
    """Only a tenth of D answers a source-specific trigger: on D as a whole it pulls too little to verify, and is
    refused without the inputs nearest x_r (of x_b's true class, the source); with them it verifies, and says so."""
    trigger = ImageTrigger.square((1, 12, 12), size=3, margin=1)
    generator = torch.Generator().manual_seed(1)
    data = torch.rand(120, 1, 12, 12, generator=generator) * 0.3
    data[::10] += 0.5 * (1 - trigger.mask)  # 12 of 120 inputs of the source class, bright outside the trigger
    bug = BugReport(bug_input=trigger.apply(data[:1])[0], reference_input=data[10], label=3)
    encoder, config = ModuleEncoder(PlantedSourceSpecific(trigger.mask), RAW), ReverseConfig(windows=(1,))
    with pytest.raises(TriggerNotFound, match="no recovered trigger explains the bug") as refused:
        reverse_engineer_trigger(encoder, bug, data[20:], replace(config, near_inputs=0))
    assert "nearest x_r" not in str(refused.value) and "nan" not in str(refused.value)  # none read, none named
    recovery = reverse_engineer_trigger(encoder, bug, data[20:], config)
    assert recovery.verified and recovery.near_reference and recovery.trigger.iou(trigger) == 1.0
    assert recovery.pull.strength < config.min_strength <= recovery.pull.near_strength
    assert recovery.pull.landed < MIN_LANDED <= recovery.pull.near_landed  # it lands the inputs like x_r alone
    # `patch` reads a backdoor's signature on D: it refuses (see the README)
    with pytest.raises(CheckFailed, match="not a backdoor's signature"):
        _recovered(encoder, bug, "bug", data[20:], config, False, False, 1)
    planted = reverse_engineer_trigger(ModuleEncoder(PlantedBackdoor(trigger.mask), RAW), bug, data[20:], config)
    assert planted.verified and not planted.near_reference  # a backdoor every input answers verifies on D as before


def test_a_blended_trigger_is_refused_not_patched_as_a_region():
    pattern = torch.rand(1, 12, 12, generator=torch.Generator().manual_seed(3))
    blend = ImageTrigger.blended((1, 12, 12), 0.3, seed=3)
    encoder, bug, data = _case(PlantedBlend(pattern), blend)
    assert encoder.network.brightness(bug.bug_input[None]) > 0.5 > encoder.network.brightness(bug.reference_input[None])
    with pytest.raises(TriggerNotFound, match="not a compact region"):
        reverse_engineer_trigger(encoder, bug, data, ReverseConfig(windows=(3,)))


def test_a_second_copy_is_found_in_what_is_left_of_x_b():
    first = ImageTrigger.square((1, 12, 12), size=3, margin=1)
    second = ImageTrigger(torch.flip(first.mask, (0, 1)), torch.ones(1, 12, 12))  # the opposite corner
    both = ImageTrigger(first.mask + second.mask, torch.ones(1, 12, 12))
    encoder, bug, data = _case(PlantedTwoCopies(first.mask, second.mask), both)
    one_pass = ReverseConfig(windows=(1,), refine_steps=0)
    recovery = reverse_engineer_trigger(encoder, bug, data, one_pass)
    assert recovery.trigger.iou(both) == 1.0 and recovery.verified
    first_pass = [c for c in recovery.candidates if c.residual_of is None]
    assert all(c.status != "verified" for c in first_pass)  # A alone pulls, but x_b stays held by B
    assert any(c.pull is not None and c.pull.strength > 0.5 for c in first_pass)
    assert [c.residual_of for c in recovery.candidates if c.status == "chosen"] == [9]


def test_a_region_whose_removal_moves_any_input_as_far_does_not_explain_the_bug():
    # A ResNet's blended trigger: a 166-px region pulled clean inputs 0.97 of the way and released x_b 0.40, but
    # taking the same pixels out of ordinary inputs moved them 0.35; its patch left 99.9% ASR.
    region = TriggerPull(0.97, 0.23, 128, release=0.40, control_release=0.35)
    assert region.verifies(0.25, 0.3) and not region.verifies(*ReverseConfig().bars)
    # A square whose x_b sits near the target's class releases little, but clean inputs not at all.
    square = TriggerPull(0.96, -0.04, 128, release=0.39, control_release=0.02)
    assert square.verifies(*ReverseConfig().bars)
    assert TriggerPull(0.9, 0.0, 10, release=0.5).verifies(*ReverseConfig().bars)  # no release controls (text)


def test_a_mask_joined_to_a_held_part_must_release_more_of_x_b_than_the_part():
    def joined(release: float, held: float) -> Candidate:
        pull = TriggerPull(0.98, 0.2, 128, release=release, control_release=0.0)
        return Candidate(3, "one", 196, "weak", pull, residual_of=144, base_release=held)

    config = ReverseConfig()
    assert joined(1.0, 0.6).verifies(config)  # the second copy of a redundant trigger
    assert not joined(0.32, 0.25).verifies(config)  # more of a blended pattern: x_b is held as before
    assert Candidate(3, "one", 20, "weak", TriggerPull(0.98, 0.0, 128, release=0.32)).verifies(config)


def _found(pixels: int, pull: float, releases: dict[str, float]):
    candidate = Candidate(3, "zero", pixels, "verified", TriggerPull(pull, 0.0, 10, max(releases.values())))
    candidate.releases = releases
    return candidate, torch.zeros(4, 4), torch.zeros(4, 4), 0.0, 0.0


def test_releases_compete_fill_by_fill_so_rewriting_x_b_s_content_does_not_win():
    # A white trigger: the black fill takes it out (the tight mask releases x_b as far as the wide one); a white fill
    # cannot, and releases x_b only by painting over more of the object, the more the wider the mask.
    tight = _found(33, 0.96, {"zero": 0.34, "one": 0.02})
    wide = _found(79, 0.96, {"zero": 0.36, "one": 1.0})
    assert smallest_explaining([wide, tight], ReverseConfig())[0].pixels == 33
    # Part of a trigger pulls as hard as the whole but leaves x_b held by the rest: under no fill does it release.
    part = _found(20, 0.96, {"zero": 0.05, "one": 0.02})
    whole = _found(40, 0.96, {"zero": 0.6, "one": 0.3})
    assert smallest_explaining([whole, part], ReverseConfig())[0].pixels == 40
    # A smaller mask that explains the bug but pulls far less than the best does not compete on size.
    weak = _found(10, 0.5, {"zero": 0.6, "one": 0.3})
    assert smallest_explaining([whole, weak], ReverseConfig())[0].pixels == 40


def test_force_hands_back_the_best_unverified_candidate():
    trigger = ImageTrigger.square((1, 12, 12), size=3, margin=1)
    encoder, bug, data = _case(PlantedBackdoor(trigger.mask), trigger)
    strict = ReverseConfig(windows=(1,), min_release=5.0)  # nothing can explain the bug this well
    with pytest.raises(TriggerNotFound, match=r"releases it .* \(needs 5.00, and 3× the"):
        reverse_engineer_trigger(encoder, bug, data, strict)
    forced = reverse_engineer_trigger(encoder, bug, data, strict, force=True)
    assert not forced.verified and forced.trigger.iou(trigger) == 1.0


def test_flat_attribution_is_refused_never_an_empty_trigger():
    class Blind(nn.Module):  # sees nothing a small window could hide: every occlusion changes nothing
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(1, 8))

        def forward(self, x: Tensor) -> Tensor:
            return (x.flatten(1).mean(1, keepdim=True) > 10).float() + self.weight

    trigger = ImageTrigger.square((1, 12, 12), size=3)
    encoder, bug, data = _case(Blind(), trigger)
    with pytest.raises(TriggerNotFound, match="every occlusion map was flat"):
        reverse_engineer_trigger(encoder, bug, data, ReverseConfig(windows=(3,)))


def test_refinement_drops_pixels_the_backdoor_does_not_read():
    trigger = ImageTrigger.square((1, 12, 12), size=3, margin=3)
    encoder, bug, data = _case(PlantedBackdoor(trigger.mask), trigger)
    loose = trigger.dilated(2).mask
    target = encoder.embed(bug.bug_input[None])
    refined = refine_mask(encoder, bug.bug_input, loose, data, target, steps=80, penalty=0.05)
    assert refined.sum() < loose.sum()
    assert (refined * trigger.mask).sum() >= 0.8 * trigger.mask.sum()
    assert all(p.requires_grad for p in encoder.parameters())  # the model is handed back as it was


def test_minority_cluster_is_the_mask():
    scores = torch.zeros(6, 6)
    scores[0, :3] = 10.0
    mask, threshold = split_scores(scores)
    assert mask.sum() == 3 and mask[0, :3].all()
    assert 0 < threshold < 10
    assert split_scores(torch.ones(4, 4))[0].sum() == 0  # flat scores: nothing, which callers must refuse


def test_a_wide_cut_is_narrowed_to_its_peak():
    from mudjacking.triggers.split import narrowed

    scores = torch.zeros(10, 10)
    scores[:5] = 1.0  # a wide plateau that a first cut marks whole
    scores[0, :3] = 5.0  # and the peak within it
    mask = (scores > 0).float()
    assert narrowed(scores, mask, max_pixels=10).nonzero().tolist() == [[0, 0], [0, 1], [0, 2]]
    assert torch.equal(narrowed(scores, mask, max_pixels=50), mask)  # small enough already: left as it is


def test_bug_images_of_another_size_than_the_patching_set_are_an_error():
    trigger = ImageTrigger.square((1, 12, 12), size=3)
    encoder, bug, _ = _case(PlantedBackdoor(trigger.mask), trigger)
    with pytest.raises(ValueError, match=r"give x_b, x_r and the patching set at one size"):
        reverse_engineer_trigger(encoder, bug, torch.rand(10, 1, 16, 16))
