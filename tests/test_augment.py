import torch

from normlab.augment import augment, crop, cutout, flip


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _batch():
    return torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=_gen(1))


def test_flip_mirrors_some_and_keeps_others():
    x = _batch()
    y = flip(x, _gen())
    flipped = (y == x.flip(3)).flatten(1).all(1)
    kept = (y == x).flatten(1).all(1)
    assert (flipped | kept).all() and flipped.any() and kept.any()


def test_crop_is_a_translation_of_the_padded_image():
    x = _batch()
    y = crop(x, 4, _gen())
    assert y.shape == x.shape and y.dtype == torch.uint8
    padded = torch.nn.functional.pad(x.float(), (4,) * 4, mode="reflect").to(torch.uint8)
    for i in range(4):
        assert any((padded[i, :, dy:dy + 32, dx:dx + 32] == y[i]).all() for dy in range(9) for dx in range(9))


def test_cutout_fills_a_square_with_the_mean_colour():
    x = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    y = cutout(x, 8, _gen())
    changed = (y != x).any(1)
    assert changed.flatten(1).sum(1).max() <= 64 and changed.any()
    assert y[:, 0][changed].unique().tolist() == [125]  # round(0.4914 * 255)


def test_same_seed_same_augmentation():
    x = _batch()
    a = augment(x, _gen(5), do_flip=True, crop_pad=4, cutout_size=8)
    b = augment(x, _gen(5), do_flip=True, crop_pad=4, cutout_size=8)
    assert torch.equal(a, b)


def test_downscale_averages_to_the_smaller_size_and_keeps_full_size_batches():
    from normlab.augment import downscale

    x = torch.rand(4, 3, 32, 32)
    small = downscale(x, 16)
    assert small.shape == (4, 3, 16, 16) and small.is_contiguous(memory_format=torch.channels_last)
    # a low-pass filter, then sampling: flat regions keep their value, and the mean stays about the same
    flat = torch.full((1, 3, 32, 32), 0.25)
    assert torch.allclose(downscale(flat, 16), torch.full((1, 3, 16, 16), 0.25))
    assert torch.allclose(small.mean((2, 3)), x.mean((2, 3)), atol=0.01)
    assert small.std() < x.std() / 1.5  # the pixel noise is averaged away, not aliased
    assert downscale(x, 32) is x


def test_alternating_flips_mirror_each_image_once_in_every_two_epochs():
    from normlab.augment import alternating_flips

    even, odd, next_even = (alternating_flips(1000, 3, e, "cpu") for e in (0, 1, 2))
    assert torch.equal(even, ~odd) and torch.equal(even, next_even)  # both ways in every pair of epochs
    assert 400 < int(even.sum()) < 600  # a random half, not a block
    assert not torch.equal(even, alternating_flips(1000, 4, 0, "cpu"))  # the seed picks the half
    x = _batch()
    mask = torch.arange(64) % 2 == 0
    y = augment(x, _gen(), do_flip=True, crop_pad=0, cutout_size=0, flip_mask=mask)
    assert torch.equal(y[mask], x[mask].flip(3)) and torch.equal(y[~mask], x[~mask])


def test_window_is_a_full_scale_piece_of_each_image():
    from normlab.augment import window

    x = _batch()
    y = window(x, 16, _gen())
    assert y.shape == (64, 3, 16, 16) and y.dtype == torch.uint8
    for i in range(4):  # a piece of the image itself, pixel for pixel
        assert any(torch.equal(x[i, :, dy:dy + 16, dx:dx + 16], y[i]) for dy in range(17) for dx in range(17))
    assert window(x, 32, _gen()) is x
