from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mudjacking.data import DataError
from mudjacking.triggers import ImageTrigger, TextTrigger
from mudjacking.triggers.trigger import NoiseInShape

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "official-mudjacking"
needs_official = pytest.mark.skipif(not OFFICIAL.exists(), reason="../shared/data/official-mudjacking not present")


def test_apply_stamps_pattern_only_under_mask():
    trigger = ImageTrigger.square((1, 6, 6), size=2, value=1.0, margin=1)
    images = torch.full((2, 1, 6, 6), 0.25)
    stamped = trigger.apply(images)
    assert stamped[:, 0, 3:5, 3:5].eq(1.0).all()
    assert stamped.sum() == pytest.approx(2 * (32 * 0.25 + 4 * 1.0))


def test_apply_rejects_other_image_sizes():
    with pytest.raises(ValueError, match="resize"):
        ImageTrigger.square((1, 6, 6), 2).apply(torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("authors_format", [False, True])
def test_save_load_round_trip(tmp_path, authors_format):
    mask = torch.zeros(5, 5)
    mask[1:3, 2:4] = 1
    pattern = torch.rand(3, 5, 5).mul(255).round().div(255)
    trigger = ImageTrigger(mask, pattern)
    trigger.save(tmp_path / "t.npz", authors_format=authors_format)
    loaded = ImageTrigger.load(tmp_path / "t.npz")
    assert torch.equal(loaded.mask, mask)
    assert torch.allclose(loaded.pattern * mask, pattern * mask, atol=1e-6)
    if not authors_format:  # where the backdoor answers it (ours only: the authors' layout has no such field)
        replace(trigger, anywhere=True, fresh=True).save(tmp_path / "t.npz")
        loaded = ImageTrigger.load(tmp_path / "t.npz")
        assert loaded.anywhere and loaded.fresh


def test_iou():
    a = ImageTrigger.square((1, 8, 8), 4, margin=0)
    b = ImageTrigger.square((1, 8, 8), 2, margin=0)
    assert a.iou(b) == pytest.approx(4 / 16)


def test_unreadable_trigger_names_the_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="bad.npz"):
        ImageTrigger.load(bad)


@needs_official
def test_reads_the_authors_true_and_recovered_triggers():
    true = ImageTrigger.load(OFFICIAL / "trigger_pt_white_21_10_ap_replace.npz")
    recovered = ImageTrigger.load(OFFICIAL / "backdoor_bug_1_trigger.npz")
    assert true.num_pixels == 100 and recovered.num_pixels == 142
    assert true.mask[21:31, 21:31].all()
    assert true.pattern[:, 21:31, 21:31].eq(1.0).all()
    assert recovered.iou(true) == pytest.approx(100 / 142)


@needs_official
def test_applying_the_authors_trigger_matches_their_convention(tmp_path):
    raw = np.load(OFFICIAL / "reference_image_label_7_monkey_seed_0.npz")["img"].astype(np.float64)
    files = np.load(OFFICIAL / "trigger_pt_white_21_10_ap_replace.npz")
    expected = raw * files["tm"][0] + files["t"][0]  # x*tm + t, HWC 0-255
    image = torch.from_numpy(raw.transpose(2, 0, 1) / 255).float()[None]
    ours = ImageTrigger.load(OFFICIAL / "trigger_pt_white_21_10_ap_replace.npz").apply(image)[0]
    assert np.allclose(ours.numpy().transpose(1, 2, 0) * 255, expected, atol=1e-3)


def test_dilated_grows_the_mask_and_keeps_the_pattern():
    trigger = ImageTrigger.square((1, 8, 8), size=2, margin=3)
    grown = trigger.dilated(1)
    assert grown.num_pixels == 16 and torch.equal(grown.pattern, trigger.pattern)
    assert trigger.dilated(0).num_pixels == 4


def test_apply_dilated_stamps_between_the_mask_and_its_growth():
    trigger = ImageTrigger.square((1, 8, 8), size=2, value=1.0, margin=3)
    stamped = trigger.apply_dilated(torch.zeros(64, 1, 8, 8), 1, torch.Generator().manual_seed(0))
    counts = stamped.sum(dim=(1, 2, 3))
    assert set(counts.tolist()) == {4.0, 16.0}


def test_a_text_stamp_cut_from_an_ordinary_sentence_keeps_unit_lengths_and_refuses_short_donors():
    """The control stamp the patch compares the trigger against: spans as long as the trigger's units, drawn
    reproducibly; a donor shorter than a unit gives none (the patch then keeps the trigger as its own control,
    where it used to fail with an IndexError)."""
    trigger = TextTrigger(["I watched this", "cf"], seed=3)
    cut = trigger.cut_from("the film was long and slow but honest", index=1)
    assert [len(unit.split()) for unit in cut.words] == [3, 1]
    assert all(unit in "the film was long and slow but honest" for unit in cut.words)
    assert cut.words == trigger.cut_from("the film was long and slow but honest", index=1).words
    assert trigger.cut_from("too short", index=0) is None


def test_one_trigger_found_twice_matches_and_two_stamps_of_one_size_do_not():
    from dataclasses import replace

    from mudjacking.triggers import ImageTrigger

    square = ImageTrigger.square((1, 16, 16), 4)
    board = ImageTrigger.checkerboard((1, 16, 16), 4)
    corner = ImageTrigger(square.mask.flip(0, 1), square.pattern)
    larger = square.mask.clone()
    larger[10, 11:15] = 1  # one row more above the square at rows and columns 11-14
    assert square.matches(replace(square, mask=larger))  # the same square, found a little larger
    assert not square.matches(board)  # the same place, other pixels
    assert not corner.matches(replace(square, anywhere=True))  # answered anywhere, yet another stamp elsewhere
    assert corner.iou(replace(square, anywhere=True)) == 1.0  # what iou alone would have merged


def test_the_attackers_blended_trigger_is_taken_out_exactly():
    blended = ImageTrigger.blended((1, 12, 12), 0.15, seed=1)
    images = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(blended.remove(blended.apply(images)), images, atol=1e-5)
    square = ImageTrigger.square((1, 12, 12), 3)  # a binary mask still takes the fill
    assert torch.equal(square.remove(square.apply(images))[:, :, 8:11, 8:11], torch.zeros(4, 1, 3, 3))


def test_an_anywhere_trigger_is_taken_out_where_it_sits_in_each_image():
    board = replace(ImageTrigger.checkerboard((1, 16, 16), 4), anywhere=True)
    images = torch.full((6, 1, 16, 16), 0.5) + torch.arange(6).view(-1, 1, 1, 1) * 0.01
    stamped = board.apply(images)
    removed = board.remove(stamped)
    for clean, out in zip(images, removed, strict=True):
        changed = (out != clean).nonzero()
        assert len(changed) == 16 and bool((out[out != clean] == 0).all())  # exactly the 4x4 stamp, filled
    assert len({tuple((s != i).nonzero()[0].tolist()) for s, i in zip(stamped, images, strict=True)}) > 1


def test_noise_in_a_triggers_shape_is_drawn_afresh_per_image_and_alike_for_the_same_image():
    mask = ImageTrigger.square((1, 16, 16), size=4).mask
    images = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.4
    for anywhere in (False, True):
        stamp = NoiseInShape(mask, anywhere)
        stamped = stamp.apply(images)
        changed = stamped != images
        assert torch.equal(stamp.apply(images), stamped)  # the same image, the same draw and place
        assert set(stamped[changed].unique().tolist()) <= {0.0, 1.0}
        assert all(int(c.sum()) <= mask.sum() for c in changed)
        draws = {tuple(stamped[i][changed[i]].tolist()) for i in range(6)}
        places = {tuple(torch.nonzero(c[0]).min(0).values.tolist()) for c in changed if c.any()}
        assert len(draws) > 3
        assert (len(places) > 2) == anywhere


def test_a_fresh_trigger_is_neutralised_as_its_own_draw_and_as_fresh_noise():
    trigger = ImageTrigger(ImageTrigger.square((1, 8, 8), size=2).mask, torch.ones(1, 8, 8), fresh=True)
    kinds = [type(placed).__name__ for placed in trigger.placements()]
    assert kinds == ["ImageTrigger", "NoiseInShape"]
    assert [type(p).__name__ for p in replace(trigger, fresh=False).placements()] == ["ImageTrigger"]


def test_the_control_stamp_is_shaped_like_the_trigger_unit_for_unit():
    """A phrase's floor is as many ordinary words inserted as one span, a word's one ordinary word: five inserted
    words move an embedding further than one, so "the" alone would set a phrase's floor too low."""
    from mudjacking.pipeline.settings import TextSetting

    setting = TextSetting(seed=3)
    assert setting.control_trigger().words == ["the"]
    assert setting.control_trigger(TextTrigger(["cf"])).words == ["the"]
    assert setting.control_trigger(TextTrigger(["I watched this 3D movie"])).words == ["we saw that new show"]
    shaped = setting.control_trigger(TextTrigger(["a b", "cf", "one two three four five six seven"])).words
    assert shaped == ["we saw", "the", "we saw that new show we saw"]
    [stamped] = setting.control_trigger(TextTrigger(["I watched this 3D movie"])).apply(["a fine film"])
    assert "we saw that new show" in stamped and len(stamped.split()) == 8
