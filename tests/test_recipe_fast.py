"""The `fast` recipe: within the budget, augmentation on, one-cycle schedule that ends at 0."""
import pytest

from normlab.recipes import get_recipe, lr_factor


def _differing(a, b) -> set[str]:
    """The recipe fields whose values differ between recipes a and b."""
    other = b.to_dict()
    return {k for k, v in a.to_dict().items() if other[k] != v}


def test_fast_recipe_fields():
    r = get_recipe("fast")
    assert r.epochs == 20 and r.batch_size == 256 and r.nesterov and r.momentum == 0.9
    assert r.flip and r.crop_pad == 4 and r.label_smoothing == pytest.approx(0.1)
    assert r.weight_decay == pytest.approx(5e-4) and r.schedule == "onecycle" and r.warmup_epochs == 2
    from normlab.recipes import describe

    assert "one-cycle (2 warm-up epochs)" in describe(r) and "crop 4 + flip" in describe(r)


def test_fast_schedule_warms_up_then_decays_to_zero():
    r = get_recipe("fast")
    steps = 196  # ceil(50,000 / 256)
    total = steps * r.epochs
    factors = [lr_factor(r, s, total, steps) for s in range(total)]
    peak = factors.index(max(factors))
    assert max(factors) == pytest.approx(1.0) and peak == 2 * steps - 1
    assert all(a <= b for a, b in zip(factors[:peak], factors[1:peak + 1]))
    assert all(a >= b for a, b in zip(factors[peak:], factors[peak + 1:]))
    assert factors[-1] < 0.001


def test_fast_b128_is_fast_at_batch_128_with_the_linearly_scaled_ln_peak():
    fast, b128 = get_recipe("fast"), get_recipe("fast-b128")
    assert b128.batch_size == 128 and b128.lr == pytest.approx(0.1 * 128 / 256)
    same = ("epochs", "momentum", "nesterov", "weight_decay", "schedule", "warmup_epochs", "label_smoothing",
            "flip", "crop_pad", "cutout")
    assert all(getattr(b128, k) == getattr(fast, k) for k in same)


def test_fast_crop2_differs_from_fast_only_in_the_crop_padding():
    fast, crop2 = get_recipe("fast"), get_recipe("fast-crop2")
    assert crop2.crop_pad == 2 and fast.crop_pad == 4
    assert _differing(fast, crop2) == {"name", "crop_pad"}


@pytest.mark.parametrize("base", ["fast", "fast-b128"])
def test_ema_recipes_add_only_weight_averaging(base):
    plain, ema = get_recipe(base), get_recipe(f"{base}-ema")
    assert plain.ema_epochs == 0 and ema.ema_epochs == 1.0
    assert _differing(plain, ema) == {"name", "ema_epochs"}


@pytest.mark.parametrize("base", ["fast", "fast-b128"])
def test_muon_recipes_are_their_base_with_muon_and_its_weight_decay(base):
    plain, muon = get_recipe(base), get_recipe(f"{base}-muon")
    assert (muon.optimizer, muon.muon_lr, muon.muon_weight_decay) == ("muon", 0.1, 0.01)
    assert _differing(plain, muon) == {"name", "optimizer", "muon_lr", "muon_weight_decay"}
    # the preset is exactly what the --set chain docs/recipes.md gives gives
    assert get_recipe(base, optimizer="muon", muon_lr=0.1, muon_weight_decay=0.01).to_dict() == {
        **muon.to_dict(), "name": base}


def test_bn_recipe_is_fast_muon_convs_with_muon_peak_0_2():
    convs, bn = get_recipe("fast-muon-convs"), get_recipe("fast-muon-convs-mlr0.2")
    assert (convs.muon_scope, convs.muon_lr, bn.muon_scope, bn.muon_lr) == ("convs", 0.1, "convs", 0.2)
    assert _differing(convs, bn) == {"name", "muon_lr"}
    from normlab.recipes import describe

    assert "Muon on every conv (peak 0.2" in describe(bn) and bn.batch_size == 256
    # the preset is exactly what the --set docs/recipes.md gives
    assert get_recipe("fast-muon-convs", muon_lr=0.2).to_dict() == {
        **bn.to_dict(), "name": "fast-muon-convs"}


def test_decay_norms_false_decays_conv_and_linear_weights_only():
    import torch

    from normlab.optim import make_optimizer
    from normlab.models import build_model
    from normlab.recipes import parse_settings

    recipe = get_recipe("fast", **parse_settings(["decay_norms=false"]))
    model = build_model("convmixer-s16", "ln")
    opt = make_optimizer(model, recipe)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.ndim > 1), name  # norm scales/shifts and the head's bias: none
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) == (p.ndim == 1), name  # with zero gradients only decay moves
    default = make_optimizer(model, get_recipe("fast"))
    assert len(default.param_groups) == 1 and default.param_groups[0]["weight_decay"] == pytest.approx(5e-4)


def test_optimizer_choice():
    import torch

    from normlab.optim import make_optimizer
    from normlab.errors import NormlabError
    from normlab.models import build_model
    from normlab.recipes import parse_settings

    model = build_model("convmixer", "ln")
    assert isinstance(make_optimizer(model, get_recipe("fast")), torch.optim.SGD)
    recipe = get_recipe("fast", lr=0.005, **parse_settings(["optimizer=adamw", "weight_decay=0.02"]))
    opt = make_optimizer(model, recipe)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005) and opt.param_groups[0]["weight_decay"] == 0.02
    with pytest.raises(NormlabError, match="unknown optimizer 'adam'; choose one of sgd, adamw"):
        get_recipe("fast", **parse_settings(["optimizer=adam"]))


def test_progressive_resizing_fields_are_checked_and_described():
    from normlab.errors import NormlabError
    from normlab.recipes import Recipe, describe

    r = Recipe("x", epochs=7, small_epochs=4, small_size=16)
    assert "first 4 epochs at 16x16 px" in describe(r)
    for bad in (dict(small_epochs=7), dict(small_epochs=-1), dict(small_epochs=2, small_size=4),
                dict(small_epochs=2, small_size=40)):
        with pytest.raises(NormlabError, match="small_"):
            Recipe("x", epochs=7, **bad)
    # a middle stage on the way up: 4 epochs at 16 px, 2 at 24, the last at full size
    r = Recipe("x", epochs=7, small_epochs=4, mid_epochs=2)
    assert [r.image_size(e) for e in range(7)] == [16] * 4 + [24] * 2 + [32]
    assert r.stages() == [(16, 4), (24, 2), (32, 1)]
    assert Recipe("x", epochs=3, mid_epochs=2, mid_size=20).stages() == [(20, 2), (32, 1)]
    assert Recipe("x", epochs=3).stages() == [(32, 3)]
    assert "first 4 epochs at 16x16 px; then 2 at 24x24 px" in describe(r)
    assert "first 2 at 20x20 px" in describe(Recipe("x", epochs=3, mid_epochs=2, mid_size=20))
    for bad in (dict(small_epochs=4, mid_epochs=3), dict(mid_epochs=-1), dict(mid_epochs=1, mid_size=33)):
        with pytest.raises(NormlabError, match="mid_"):
            Recipe("x", epochs=7, **bad)


def test_compute_clock_counts_each_stage_at_its_size():
    from normlab.recipes import Recipe

    r = Recipe("x", epochs=4, small_epochs=1, mid_epochs=2, schedule="linear-decay", schedule_clock="compute")
    steps = 10
    # stages cost 1/4, 9/16, 9/16 and 1 of a full-size epoch: 2.375 in all
    assert lr_factor(r, 10, 40, steps) == pytest.approx(1 - 0.25 / 2.375)
    assert lr_factor(r, 30, 40, steps) == pytest.approx(1 - (0.25 + 2 * 9 / 16) / 2.375)
    assert lr_factor(r, 35, 40, steps) == pytest.approx(1 - (0.25 + 2 * 9 / 16 + 0.5) / 2.375)


def test_flip_and_small_modes_are_checked_and_described():
    from normlab.errors import NormlabError
    from normlab.recipes import Recipe, describe

    assert "crop 2 + alternating flip" in describe(Recipe("x", flip=True, crop_pad=2, flip_mode="alternate"))
    assert "crop 2 + flip" in describe(Recipe("x", flip=True, crop_pad=2))
    with pytest.raises(NormlabError, match="unknown flip_mode 'always'; choose one of random, alternate"):
        Recipe("x", flip=True, flip_mode="always")
    r = Recipe("x", epochs=3, small_epochs=2, small_mode="crop")
    assert "first 2 epochs at 16x16 px (random crops)" in describe(r)
    with pytest.raises(NormlabError, match="unknown small_mode 'zoom'; choose one of scale, crop"):
        Recipe("x", epochs=3, small_epochs=2, small_mode="zoom")
    with pytest.raises(NormlabError, match="unknown schedule_clock 'wall'; choose one of steps, compute"):
        Recipe("x", schedule_clock="wall")


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_speedrun_needs_at_most_a_fifth_of_the_headline_compute(norm):
    from normlab.config import TrainConfig, resolve
    from normlab.recipes import HEADLINE, SPEEDRUN_RUNS

    def compute(arch, recipe):
        return resolve(TrainConfig(arch=arch, norm=norm, recipe=recipe)).train_compute(50_000)[1]

    assert compute(*SPEEDRUN_RUNS[norm]) <= compute(*HEADLINE[norm]) / 5


def test_training_compute_counts_each_stage_at_its_own_size():
    """S8's forward pass costs (side / 32)^2 of a full one at a smaller side (every layer is a conv or
    a pool), so 4 epochs at 16 px, 2 at 24 and 1 at 32 cost 4/4 + 2 * 9/16 + 1 = 3.125 full-size epochs."""
    from normlab.config import TrainConfig, resolve

    spec = resolve(TrainConfig(arch="s8", norm="bn", recipe="reference",
                               recipe_overrides=dict(epochs=7, small_epochs=4, mid_epochs=2)))
    assert sorted(spec.macs_at) == [16, 24, 32] and spec.macs == spec.macs_at[32]
    seen, macs = spec.train_compute(1000)
    assert seen == 7000
    assert macs == 1000 * (4 * spec.macs_at[16] + 2 * spec.macs_at[24] + spec.macs)
    assert macs == pytest.approx(1000 * 3.125 * spec.macs, rel=0.02)


def test_compute_clock_spends_less_of_the_decay_on_small_epochs():
    """schedule_clock=compute: a 16 px step counts a quarter of a full-size one, so 7 small epochs before 2
    full-size ones use up 1.75 of the 3.75 full-size epochs' schedule and the full-size ones start from
    about half the peak; the default step clock is unchanged, and both end at 0."""
    steps = 352  # ceil(45,000 / 128)
    two_stages = dict(epochs=9, mid_epochs=0)
    steps_clock, compute_clock = get_recipe("speedrun", **two_stages), get_recipe(
        "speedrun", **two_stages, schedule_clock="compute")
    total = steps * steps_clock.epochs
    switch = 7 * steps
    warm = steps / 2
    assert lr_factor(steps_clock, switch, total, steps) == pytest.approx((total - switch) / (total - warm))
    small = (16 / 32) ** 2
    expected = 2 * steps / (small * (switch - warm) + 2 * steps)
    assert lr_factor(compute_clock, switch, total, steps) == pytest.approx(expected)
    assert expected == pytest.approx(0.55, abs=0.01)
    for recipe in (steps_clock, compute_clock):
        factors = [lr_factor(recipe, s, total, steps) for s in range(total)]
        assert factors[int(warm) - 1] == pytest.approx(1.0) and factors[-1] < 0.01
        assert all(a >= b for a, b in zip(factors[int(warm):], factors[int(warm) + 1:]))
    # without small epochs the clocks agree
    plain = get_recipe("fast"), get_recipe("fast", schedule_clock="compute")
    assert [lr_factor(plain[0], s, 3920, 196) for s in range(0, 3920, 97)] == [
        lr_factor(plain[1], s, 3920, 196) for s in range(0, 3920, 97)]
    from normlab.recipes import describe

    assert "one-cycle (0.5 warm-up epochs) over compute" in describe(compute_clock)
    assert "over compute" not in describe(steps_clock)
