"""Corruptions (normlab.corruptions) and the robustness command: determinism, pinned pixels, hand
computations of the building blocks, test-time BatchNorm adaptation, the CLI and its report."""
import json

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, run_cli
from normlab import corruptions as C
from normlab.errors import NormlabError
from normlab.models import build_model
from normlab.robust import adapt_batch_norm, has_batch_norm, measure


def images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


# Severity 3 of each corruption on images(3): three pixels and the sum of all. Any change to a corruption's
# arithmetic or its random draws moves these (numpy, Pillow and matplotlib are pinned in constraints.txt).
PINNED = {
    "gaussian_noise": [169, 83, 164, 1169744],
    "shot_noise": [201, 84, 155, 1161283],
    "impulse_noise": [172, 79, 144, 1172035],
    "speckle_noise": [178, 75, 112, 1160141],
    "defocus_blur": [135, 131, 154, 1168924],
    "gaussian_blur": [143, 140, 152, 1168790],
    "motion_blur": [180, 137, 166, 1171223],
    "fog": [127, 81, 102, 1085384],
    "brightness": [210, 98, 170, 1357095],
    "contrast": [144, 107, 133, 1168537],
    "saturate": [172, 49, 111, 1011860],
    "pixelate": [172, 115, 144, 1174810],
    "jpeg_compression": [61, 85, 145, 1174685],
    "elastic_transform": [77, 147, 139, 1170594],
}


def test_every_corruption_is_pinned_and_the_list_covers_the_families():
    assert set(PINNED) == set(C.CORRUPTIONS)
    assert set(C.FAMILIES) == {"noise", "blur", "weather", "digital"}
    assert all(len(c.params) == 5 for c in C.CORRUPTIONS.values())


@pytest.mark.parametrize("name", list(PINNED))
def test_corruptions_are_deterministic_and_pinned(name):
    x = images()
    y = C.corrupt(x, name, 3)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert torch.equal(y, C.corrupt(x, name, 3))  # same inputs, same pixels
    assert [int(y[0, 0, 0, 0]), int(y[1, 1, 10, 20]), int(y[2, 2, 31, 5]), int(y.long().sum())] == PINNED[name]
    # the first images do not depend on how many follow (each block of 500 draws as a whole block would)
    assert torch.equal(C.corrupt(x[:1], name, 3), y[:1])


def test_the_seed_changes_the_random_corruptions_only():
    x = images()
    assert not torch.equal(C.corrupt(x, "gaussian_noise", 2, seed=0), C.corrupt(x, "gaussian_noise", 2, seed=1))
    assert torch.equal(C.corrupt(x, "contrast", 2, seed=0), C.corrupt(x, "contrast", 2, seed=1))


def test_severity_makes_noise_stronger():
    x = images(8)
    dist = [(C.corrupt(x, "gaussian_noise", s).float() - x.float()).abs().mean() for s in C.SEVERITIES]
    assert all(a < b for a, b in zip(dist, dist[1:]))


def test_contrast_by_hand():
    x = images(2)
    f = x.permute(0, 2, 3, 1).double() / 255
    mean = f.mean(dim=(1, 2), keepdim=True)
    expected = ((f - mean) * 0.4 + mean).clamp(0, 1).mul(255).to(torch.uint8).permute(0, 3, 1, 2)
    assert torch.equal(C.corrupt(x, "contrast", 3), expected)


@pytest.mark.parametrize("mode,numpy_mode", [("nearest", "edge"), ("mirror", "reflect"), ("symmetric", "symmetric")])
def test_border_rules_match_numpy_padding(mode, numpy_mode):
    row = np.arange(5)
    idx = C._border_index(5, np.arange(-7, 12), mode)
    assert row[idx].tolist() == np.pad(row, 7, mode=numpy_mode).tolist()


def test_gaussian_filter_by_hand():
    rng = np.random.default_rng(0)
    x = rng.random((1, 9, 9, 1))
    sigma, radius = 0.8, int(4 * 0.8 + 0.5)
    t = np.arange(-radius, radius + 1)
    k = np.exp(-t ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    padded = np.pad(x[0, :, :, 0], radius, mode="edge")
    by_hand = np.array([[np.sum(np.outer(k, k) * padded[i:i + 2 * radius + 1, j:j + 2 * radius + 1])
                         for j in range(9)] for i in range(9)])
    assert np.allclose(C.gaussian_filter(x, sigma)[0, :, :, 0], by_hand)


def test_motion_kernel_is_one_sided_along_the_angle():
    w, dx, dy = C.motion_kernel(6, 2, 0.0)
    assert len(w) == 13 and np.isclose(w.sum(), 1) and np.all(np.diff(w) < 0)
    assert dx.tolist() == list(range(13)) and dy.tolist() == [0] * 13
    _, dx, dy = C.motion_kernel(6, 2, 90.0)
    assert dx.tolist() == [0] * 13 and dy.tolist() == list(range(13))


def test_defocus_disk_is_normalized_and_round():
    d = C._disk(1.5, 0.1)
    assert np.isclose(d.sum(), 1) and np.allclose(d, d.T) and d[8, 8] == d.max()


def test_bad_requests_are_one_line_errors():
    with pytest.raises(NormlabError, match="unknown corruption 'fogg'"):
        C.corrupt(images(), "fogg", 1)
    with pytest.raises(NormlabError, match="severities must be among 1-5, got 6"):
        C.corrupt(images(), "fog", 6)
    with pytest.raises(NormlabError, match="uint8"):
        C.corrupt(images().float(), "fog", 1)


def test_bn_adaptation_re_estimates_the_statistics_from_the_images():
    torch.manual_seed(0)
    model = build_model("s8", "bn").eval()
    x = images(64, seed=1)
    adapted = adapt_batch_norm(model, x, batch_size=16)
    first = adapted.layers.C1[1]
    with torch.no_grad():
        z = adapted.layers.C1[0](adapted.normalize(x.float() / 255))
    assert torch.allclose(first.running_mean, z.mean(dim=(0, 2, 3)), atol=1e-5)
    assert not first.training and model.layers.C1[1].num_batches_tracked == 0  # the original is untouched
    assert has_batch_norm(model) and not has_batch_norm(build_model("s8", "gn"))


def test_measure_reports_every_cell_and_adapts_only_bn():
    torch.manual_seed(0)
    x, y = images(40, seed=2), torch.randint(0, 10, (40,))
    r = measure({"bn": build_model("s8", "bn"), "gn": build_model("s8", "gn")}, x, y,
                corruptions=("contrast", "gaussian_noise"), severities=(1, 5), adapt_bn=True, device="cpu", log=lambda *_: None)
    bn, gn = r["models"]["bn"], r["models"]["gn"]
    assert set(bn["acc"]) == {"contrast", "gaussian_noise"} and all(len(v) == 2 for v in bn["acc"].values())
    assert bn["adapted_acc"] is not None and gn["adapted_acc"] is None
    assert set(bn["relative_drop"]) == {"digital", "noise"} and len(bn["relative_drop"]["noise"]) == 2
    cells = [v for vs in gn["acc"].values() for v in vs]
    assert gn["mean_corruption_acc"] == pytest.approx(sum(cells) / len(cells), abs=0.01)


def test_the_cli_writes_a_report_and_keeps_it(tmp_path, real_data_dir):
    out = tmp_path / "rob"
    args = ["robustness", "--pretrained", "gn", "--corruptions", "contrast,jpeg_compression", "--severities", "1,5",
            "--limit", "200", "--out", out, "--adapt-bn"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "pretrained-gn: clean" in proc.stdout
    r = json.loads((out / "robustness.json").read_text())
    assert r["images"] == 200 and r["models"]["pretrained-gn"]["adapted_acc"] is None
    md = (out / "robustness.md").read_text()
    assert "nothing to adapt (no BatchNorm)" in md and "| contrast | digital |" in md
    before = (out / "robustness.json").read_bytes()
    assert_one_line_error(run_cli(*args), "already holds a robustness report", "--overwrite")
    assert (out / "robustness.json").read_bytes() == before
    # figures and HTML are not committed: --report-only draws them again from robustness.json
    text = md
    for f in ("robustness.md", "robustness.html", "robustness.png", "corruptions.png"):
        (out / f).unlink()
    proc = run_cli("robustness", "--report-only", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "robustness.md").read_text() == text and (out / "corruptions.png").is_file()
    assert_one_line_error(run_cli("robustness", "--report-only", "--out", tmp_path / "none"), "no robustness.json")
    from test_report import open_in_chromium

    state = open_in_chromium(out / "robustness.html", tmp_path / "shot.png")
    assert state["total"] == 2 and state["loaded"] == 2 and state["errors"] == [], state


def test_cli_bad_inputs(tmp_path):
    assert_one_line_error(run_cli("robustness", "--pretrained", "gn", "--corruptions", "snowstorm",
                                  "--out", tmp_path / "r"), "unknown corruption 'snowstorm'")
    assert_one_line_error(run_cli("robustness", "--pretrained", "gn", "--severities", "0,9",
                                  "--out", tmp_path / "r"), "severities must be among 1-5")
    assert_one_line_error(run_cli("robustness", "--out", tmp_path / "r"), "--pretrained NORM")
    assert_one_line_error(run_cli("robustness", "--pretrained", "gn", "--limit", "0", "--out", tmp_path / "r"),
                          "--limit")
    assert_one_line_error(run_cli("robustness", "--pretrained", "gn", "--seed", "-1", "--out", tmp_path / "r"),
                          "--seed must be a whole number")


def test_an_interrupted_measurement_goes_on_where_it_stopped(tmp_path):
    torch.manual_seed(0)
    models = {"bn": build_model("s8", "bn"), "gn": build_model("s8", "gn")}
    x, y = images(30, seed=3), torch.randint(0, 10, (30,))
    args = dict(corruptions=("contrast", "fog"), severities=(1, 3), adapt_bn=True, device="cpu")
    full = measure(models, x, y, log=lambda *_: None, **args)
    seen = []

    def stop_after_two(line):
        seen.append(line)
        if len(seen) == 2:
            raise KeyboardInterrupt

    partial = tmp_path / "p.json"
    with pytest.raises(KeyboardInterrupt):
        measure(models, x, y, log=stop_after_two, partial=partial, **args)
    lines = []
    again = measure(models, x, y, log=lines.append, partial=partial, **args)
    assert lines[0].startswith(f"resuming from {partial}: 2 corrupted set(s)") and len(lines) == 1 + 2
    assert again["models"] == full["models"]
    # another measurement (here: other severities) does not take the saved cells for its own
    other = measure(models, x, y, log=lambda *_: None, partial=partial, **{**args, "severities": (2,)})
    assert all(len(v) == 1 for v in other["models"]["bn"]["acc"].values())


def test_update_measures_only_new_or_changed_models(tmp_path, real_data_dir):
    from normlab import api
    from normlab.runs import read_json
    from normlab.weights import save_weights

    paths = {}
    for i, norm in enumerate(("bn", "gn", "ln")):
        torch.manual_seed(i)
        paths[norm] = tmp_path / norm / "model.safetensors"
        paths[norm].parent.mkdir()
        save_weights(build_model("s8", norm), paths[norm], "s8", norm)
    out = tmp_path / "rob"
    args = dict(corruptions=("contrast",), severities=(1, 4), limit=40, data_dir=real_data_dir, device="cpu", out=out,
                log=lambda *_: None)
    api.robustness([paths["bn"], paths["gn"]], **args)
    # mark the bn entry: a model that is reused keeps its old figures (measuring again would replace them)
    report = read_json(out / "robustness.json")
    report["models"]["bn"]["clean_acc"] = 12.34
    (out / "robustness.json").write_text(json.dumps(report))
    torch.manual_seed(7)
    save_weights(build_model("s8", "gn"), paths["gn"], "s8", "gn")  # gn retrained: new weights
    lines = []
    r = api.robustness([paths["bn"], paths["gn"], paths["ln"]], update=True, **{**args, "log": lines.append})
    assert list(r["models"]) == ["bn", "gn", "ln"] and r["models"]["bn"]["clean_acc"] == 12.34
    assert any(line.startswith("reusing the figures of bn from") for line in lines)
    assert r["models"]["gn"] == api.robustness([paths["gn"]], **{**args, "out": tmp_path / "fresh"})["models"]["gn"]
    assert list(read_json(out / "robustness.json")["models"]) == ["bn", "gn", "ln"]
    # a model left out is left out of the new report; other settings mean measuring everything again
    assert list(api.robustness([paths["ln"]], update=True, **args)["models"]) == ["ln"]
    with pytest.raises(NormlabError, match=r"other settings \(severities\).*--overwrite"):
        api.robustness([paths["ln"]], update=True, **{**args, "severities": (1,)})
    proc = run_cli("robustness", paths["ln"], "--update", "--overwrite", "--out", out)
    assert_one_line_error(proc, "either --overwrite", "--update")
    assert_one_line_error(run_cli("robustness", paths["ln"], "--out", out), "already holds", "--update")


def test_sources_name_the_weights_of_every_kind_of_model(tmp_path):
    from normlab.api import _named_models
    from normlab.weights import save_weights

    torch.manual_seed(0)
    a, b = build_model("s8", "gn"), build_model("s8", "gn")
    save_weights(a, tmp_path / "a.safetensors", "s8", "gn")
    _, sources = _named_models([a, b, tmp_path / "a.safetensors"], ["gn"])
    assert len(set(sources.values())) == 4 and all("weights sha256" in s for s in sources.values())
    assert _named_models([a], [])[1] == _named_models([a], [])[1]  # the same weights: the same source
