"""optimizer=muon: Muon on the pointwise convs, SGD on the rest; schedule, checkpoints, errors."""
import copy

import pytest
import torch

from normlab.optim import make_optimizer
from normlab.errors import NormlabError
from normlab.models import build_model
from normlab.optim import MuonSGD, pointwise_weights
from normlab.recipes import get_recipe, lr_factor


def _model(arch="convmixer-s16", norm="bn"):
    torch.manual_seed(0)
    return build_model(arch, norm).to(memory_format=torch.channels_last)


def _step(model, opt, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8).float().div(255)
    loss = torch.nn.functional.cross_entropy(model(x), torch.randint(0, 10, (8,), generator=g))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def test_muon_takes_the_pointwise_convs_and_sgd_the_rest():
    model = _model()
    opt = make_optimizer(model, get_recipe("fast", optimizer="muon", muon_lr=0.03))
    assert isinstance(opt, MuonSGD)
    matrices = pointwise_weights(model)
    assert len(matrices) == 9 and all(p.shape[2:] == (1, 1) for p in matrices)
    sgd = [p for g in opt.sgd.param_groups for p in g["params"]]
    assert {id(p) for p in sgd} | {id(p) for p in matrices} == {id(p) for p in model.parameters()}
    assert not {id(p) for p in sgd} & {id(p) for p in matrices}
    assert opt.param_groups[0] is opt.sgd.param_groups[0]  # the lr column logs SGD's rate
    assert [g["peak_lr"] for g in opt.param_groups] == [0.2, 0.03]


def test_a_step_moves_every_parameter_through_the_views():
    model = _model()
    opt = make_optimizer(model, get_recipe("fast", optimizer="muon"))
    before = [p.detach().clone() for p in model.parameters()]
    _step(model, opt)
    moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters()) if p.requires_grad]
    assert all(moved)
    # Muon's update is (close to) semi-orthogonal: the singular values of the step of one 64x64 matrix
    # are of about one size (but for the gradient's null directions, which stay null).
    w = pointwise_weights(model)[3]
    step = (w.detach() - before[[id(p) for p in model.parameters()].index(id(w))]).view(64, 64).float()
    s = torch.linalg.svdvals(step)
    assert s.median() > 0.4 * s.max()


def test_schedule_scales_each_group_from_its_own_peak():
    model = _model()
    recipe = get_recipe("fast", optimizer="muon", muon_lr=0.04, epochs=2)
    opt = make_optimizer(model, recipe)
    factor = lr_factor(recipe, 0, 10, 5)
    for group in opt.param_groups:
        group["lr"] = group.get("peak_lr", recipe.lr) * factor
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.2 * factor, 0.04 * factor])


def test_state_dict_round_trip_resumes_identically():
    a, b = _model(), _model()
    recipe = get_recipe("fast", optimizer="muon")
    opt_a = make_optimizer(a, recipe)
    _step(a, opt_a, seed=1)
    b.load_state_dict(a.state_dict())
    opt_b = make_optimizer(b, recipe)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as through a checkpoint file
    _step(a, opt_a, seed=2)
    _step(b, opt_b, seed=2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_muon_with_decay_norms_false_keeps_the_no_decay_group():
    model = _model(norm="ln")
    opt = make_optimizer(model, get_recipe("fast", optimizer="muon", decay_norms=False))
    assert [g["weight_decay"] for g in opt.sgd.param_groups] == [5e-4, 0.0]


def test_muon_on_a_net_without_pointwise_convs_is_a_clear_error():
    with pytest.raises(NormlabError, match="1x1 convs"):
        make_optimizer(_model("resnet8"), get_recipe("fast", optimizer="muon"))
    # with muon_scope=convs the same net has matrices for Muon: every conv weight, and nothing else
    model = _model("resnet8")
    opt = make_optimizer(model, get_recipe("fast", optimizer="muon", muon_scope="convs"))
    convs = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Conv2d)}
    assert convs and {id(p) for p, _, _ in opt._pairs} == convs
    assert not convs & {id(p) for g in opt.sgd.param_groups for p in g["params"]}


def test_negative_muon_lr_is_rejected():
    with pytest.raises(NormlabError, match="muon_lr"):
        get_recipe("fast", muon_lr=-1)


def test_labels_name_muons_peak_even_at_its_default():
    from normlab.recipes import recipe_label

    assert recipe_label(get_recipe("fast", optimizer="muon")) == "fast optimizer=muon muon_lr=0.05"
    assert recipe_label(get_recipe("fast")) == "fast"
    # a Muon preset names only what differs from it
    assert recipe_label(get_recipe("fast-b128-muon")) == "fast-b128-muon"
    assert recipe_label(get_recipe("fast-b128-muon", muon_lr=0.2)) == "fast-b128-muon muon_lr=0.2"


def test_muon_weight_decay_shrinks_only_the_pointwise_convs():
    model = _model()
    opt = make_optimizer(model, get_recipe("fast", optimizer="muon", muon_lr=0.1, muon_weight_decay=0.5,
                                           weight_decay=0.0))
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves anything
    opt.step()
    pointwise = {id(w) for w in pointwise_weights(model)}
    for b, p in zip(before, model.parameters()):
        expected = b * (1 - 0.1 * 0.5) if id(p) in pointwise else b
        assert torch.allclose(p.detach(), expected), p.shape
    with pytest.raises(NormlabError, match="muon_weight_decay"):
        get_recipe("fast", muon_weight_decay=-0.1)


def test_muon_momentum_reaches_muon_and_not_sgd():
    opt = make_optimizer(_model(), get_recipe("fast", optimizer="muon", muon_momentum=0.8))
    assert [g["momentum"] for g in opt.muon.param_groups] == [0.8]
    assert all(g["momentum"] == 0.9 for g in opt.sgd.param_groups)
    default = make_optimizer(_model(), get_recipe("fast", optimizer="muon"))
    assert [g["momentum"] for g in default.muon.param_groups] == [0.95]


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_muon_momentum_outside_0_to_1_is_rejected(value):
    with pytest.raises(NormlabError, match="muon_momentum must be at least 0 and below 1"):
        get_recipe("fast", muon_momentum=value)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_muon_scope_convs_takes_every_conv_through_views_of_their_memory(layout):
    from normlab.optim import conv_weights

    torch.manual_seed(0)
    model = build_model("convmixer-fr32", "ln").to(memory_format=layout)
    opt = make_optimizer(model, get_recipe("fast-b128-muon", muon_scope="convs"))
    convs = conv_weights(model)
    # stem 3x3 (3 -> 32), 32-wide depthwise, 9 depthwise at width 64, and the 11 pointwise convs
    assert len(convs) == 22 and sum(p.shape[2:] == (3, 3) for p in convs) == 11
    assert [v.shape for v in opt.muon.param_groups[0]["params"]][:2] == [(32, 27), (32, 9)]
    sgd = {id(p) for g in opt.sgd.param_groups for p in g["params"]}
    assert not sgd & {id(p) for p in convs}
    assert sgd | {id(p) for p in convs} == {id(p) for p in model.parameters()}
    before = [p.detach().clone() for p in convs]
    _step(model, opt)
    # every conv moved, by a step that is (close to) semi-orthogonal in the matrix the view shows
    for b, p, view in zip(before, convs, opt.muon.param_groups[0]["params"]):
        assert view.data_ptr() == p.data_ptr()
        last = layout == torch.channels_last and p.shape[1] > 1 and p.shape[2] > 1
        step = (p.detach() - b).permute(0, 2, 3, 1) if last else (p.detach() - b)
        s = torch.linalg.svdvals(step.reshape(p.shape[0], -1).float())
        assert s.max() > 0 and s.median() > 0.4 * s.max(), p.shape  # (but for the gradient's null directions)


def test_unknown_muon_scope_is_a_clear_error():
    with pytest.raises(NormlabError, match="unknown muon_scope 'all'; choose one of pointwise, convs"):
        get_recipe("fast", muon_scope="all")
