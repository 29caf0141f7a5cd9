"""Reports: built from synthetic runs, opened in a real headless Chromium."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import assert_one_line_error, run_cli
import normlab.reports as report
from normlab.data import CLASSES
from normlab.runs import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]


def _fake_study(out: Path, norms=("bn", "gn"), seeds=(0, 1)) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    results = []
    images = torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8, generator=g)
    true = torch.randint(0, 10, (60,), generator=g)
    for seed in seeds:
        for norm in norms:
            name = f"s8-{norm}-seed{seed}"
            folder = out / name
            folder.mkdir(parents=True)
            rows = [{"epoch": e, "train_loss": 2 - e / 5, "train_acc": 30 + 5 * e, "test_loss": 1.9 - e / 6,
                     "test_acc": 35 + 4 * e + seed} for e in range(1, 6)]
            (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            pred = torch.where(torch.rand(60, generator=g) < 0.3, (true + 1) % 10, true)
            report.plot_curves(rows, "test", folder / "curves.png")
            report.plot_misclassified(images, true, pred, CLASSES, folder / "misclassified.png")
            from normlab.metrics import confusion_matrix
            report.plot_confusion(confusion_matrix(true, pred), CLASSES, folder / "confusion.png")
            r = {"arch": "s8", "norm": norm, "seed": seed, "recipe": "reference", "epochs": 5, "params": 48096,
                 "train_acc": 55.0 + seed, "test_acc": 55.0 + seed, "best_test_acc": 55.0 + seed, "best_epoch": 5,
                 "seconds": 100.0 + seed, "images_per_second": 3000.0, "precision": "bf16", "device": "cpu",
                 "threads": 2, "torch": torch.__version__, "val_size": 0}
            atomic_write_json(folder / "results.json", r)
            results.append(r)
    return results


def test_compare_report_files(tmp_path):
    results = _fake_study(tmp_path)
    report.compare_report(tmp_path, results, notes=["a note"])
    md = (tmp_path / "report.md").read_text()
    assert "| bn | 2 | 48,096 | 55.50 ± 0.71 |" in md and "a note" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("<img ") == 1 + 3 * len(results)
    assert "http://" not in html and "https://" not in html  # self-contained: no network


def test_report_shows_raw_weights_beside_a_weight_average(tmp_path):
    results = _fake_study(tmp_path, norms=("bn",))
    results[0] = {**results[0], "test_acc_raw": 54.5}  # seed 0 weight-averaged, seed 1 not
    rows = report.summary_rows(results, "test")
    assert rows[0]["test acc, raw weights"] == "-"  # not every run of the group has it
    rows = report.summary_rows(results[:1], "test")
    assert rows[0]["test acc"] == "55.00" and rows[0]["test acc, raw weights"] == "54.50"
    assert "val acc" not in rows[0] and "test acc, flip TTA" not in rows[0]


def test_a_report_of_validation_split_runs_shows_no_test_figures(tmp_path):
    # Runs from before validation-split runs stopped evaluating the test set still carry test figures;
    # a report of them shows the validation split's alone.
    results = [{**r, "val_size": 5000, "val_acc": 60.0 + r["seed"], "best_val_acc": 61.0, "val_acc_raw": 59.0,
                "val_acc_flip_tta": 62.0, "test_acc_flip_tta": 57.0, "test_acc_raw": 54.0}
               for r in _fake_study(tmp_path, norms=("ln",))]
    for seed in (0, 1):  # their curves are of the validation split
        metrics = tmp_path / f"s8-ln-seed{seed}" / "metrics.jsonl"
        metrics.write_text(metrics.read_text().replace('"test_', '"val_'))
    rows = report.summary_rows(results, "val")
    assert rows[0]["val acc"] == "60.50 ± 0.71" and rows[0]["val acc, raw weights"] == "59.00 ± 0.00"
    assert rows[0]["val acc, flip TTA"] == "62.00 ± 0.00"
    assert not [k for k in rows[0] if "test" in k], rows[0]
    report.compare_report(tmp_path, results)
    md = (tmp_path / "report.md").read_text()
    assert "### s8-ln-seed0: val 60.00%" in md and "judged on it, not on the test set" in md
    assert "test acc" not in md and "test 5" not in md


def test_report_of_runs_from_different_folders_and_settings(tmp_path):
    # Runs of two studies at different peak learning rates: lr becomes a column, links lead to each folder.
    for study, norm, lr in (("a", "bn", 0.2), ("b", "gn", 0.1)):
        for r in _fake_study(tmp_path / study, norms=(norm,)):
            atomic_write_json(tmp_path / study / report.run_name(r) / "results.json", {**r, "lr": lr})
    folders = [tmp_path / "a" / "s8-bn-seed0", tmp_path / "a" / "s8-bn-seed1", tmp_path / "b" / "s8-gn-seed0"]
    proc = run_cli("report", *folders, "--out", tmp_path / "rep", "--title", "Final runs")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.startswith("# Final runs\n") and "Recipe `reference`, 5 epochs, seeds 0, 1, bf16 on cpu" in md
    assert "| norm | peak lr | runs | params |" in md
    assert "| bn | 0.2 | 2 | 48,096 | 55.50 ± 0.71 |" in md and "| gn | 0.1 | 1 | 48,096 | 55.00 |" in md
    assert "![confusion](../b/s8-gn-seed0/confusion.png)" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.count("<img ") == 1 + 3 * len(folders)


def test_report_intro_names_every_thread_count_its_runs_used(tmp_path):
    # The intro says what every run shares; runs trained with 2 and 1 threads must not read as all 2.
    runs = _fake_study(tmp_path, norms=("bn",))
    atomic_write_json(tmp_path / "s8-bn-seed1" / "results.json", {**runs[1], "threads": 1})
    proc = run_cli("report", tmp_path / "s8-bn-seed0", tmp_path / "s8-bn-seed1", "--out", tmp_path / "rep")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"bf16 on cpu (2 or 1 threads), torch {torch.__version__}." in md


def test_report_refuses_missing_and_unfinished_runs(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "metrics.jsonl").write_text("")
    for folder, fragment in ((tmp_path / "nowhere", "no such run folder"), (tmp_path / "half", "--resume")):
        proc = run_cli("report", folder, "--out", tmp_path / "rep")
        assert_one_line_error(proc, str(folder), fragment)
    # A validation-split run beside a full-data run: their per-epoch figures are of different sets.
    results = _fake_study(tmp_path / "s", seeds=(0,))
    atomic_write_json(tmp_path / "s" / "s8-gn-seed0" / "results.json", {**results[1], "val_size": 5000})
    proc = run_cli("report", tmp_path / "s" / "s8-bn-seed0", tmp_path / "s" / "s8-gn-seed0", "--out", tmp_path / "rep")
    assert_one_line_error(proc, "validation split", "separately")
    assert not (tmp_path / "rep").exists()


def test_batch_size_report_files(tmp_path):
    results = []
    for r in _fake_study(tmp_path / "src", norms=("bn", "gn"), seeds=(0,)):
        for bs in (8, 64):
            name = f"s8-{r['norm']}-bs{bs}"
            shutil.copytree(tmp_path / "src" / f"s8-{r['norm']}-seed0", tmp_path / name)
            results.append({**r, "batch_size": bs, "test_acc": r["test_acc"] + bs / 64, "train_size": 1000})
    report.batch_size_report(tmp_path, results, 0.05)
    md = (tmp_path / "report.md").read_text()
    assert "| 8 | 55.12 | 55.12 | 0.003125 |" in md and "(linear scaling)" in md
    assert "![curves](curves.png)" in md and "s8-gn-bs64/misclassified.png" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("<img ") == 2 + 3 * len(results)  # the batch plot, the curves, three per run
    assert (tmp_path / "curves.png").stat().st_size > 5_000


def _find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def open_in_chromium(html: Path, screenshot: Path) -> dict:
    """Load ``html`` in headless Chromium; return how many images loaded and what the console said."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _find_chromium(), shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("no Chromium/chromedriver found (Debian: apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,2000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.get(html.resolve().as_uri())
        state = driver.execute_script(
            "const imgs=[...document.images];"
            "return {total: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,"
            " title: document.title};")
        state["errors"] = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    return state


def test_html_report_renders_in_chromium(tmp_path):
    results = _fake_study(tmp_path / "study")
    report.compare_report(tmp_path / "study", results)
    state = open_in_chromium(tmp_path / "study/report.html", tmp_path / "shot.png")
    assert state["total"] == 1 + 3 * len(results) and state["loaded"] == state["total"], state
    assert state["errors"] == [] and state["title"]
    assert (tmp_path / "shot.png").stat().st_size > 10_000


def test_a_committed_report_redrawn_renders_in_chromium(tmp_path):
    # results/ keeps no figures or HTML: a copy of a committed report's folder gets them back from its runs'
    # data (the galleries with CIFAR-10 where NORMLAB_DATA names it, else a note in their place).
    shutil.copytree(ROOT / "results" / "reference-fp32-epyc", tmp_path / "rep")
    proc = _script(tmp_path / "rep")
    assert proc.returncode == 0, proc.stderr
    state = open_in_chromium(tmp_path / "rep" / "report.html", tmp_path / "shot.png")
    assert state["total"] > 0 and state["loaded"] == state["total"], state
    assert state["errors"] == [], state["errors"]


RUN_FIGURES = {"curves.png": ("metrics.jsonl",), "confusion.png": ("confusion_matrix.json",),
               "misclassified.png": ("misclassified.json", "model.safetensors")}


@pytest.mark.parametrize("md", sorted((ROOT / "results").glob("*/report.md")), ids=lambda p: p.parent.name)
def test_committed_reports_can_be_redrawn_from_their_runs_data(md):
    """Every run figure a committed report shows can be drawn again: its run folder holds results.json and
    the data of that figure (the gallery: its record, or the weights to find it again)."""
    import re

    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md.read_text()):
        folder, name = (md.parent / link).parent, Path(link).name
        if folder == md.parent:  # the report's own figures, drawn from its runs' metrics
            continue
        assert (folder / "results.json").is_file(), f"{link}: {folder} is not a finished run"
        assert any((folder / f).is_file() for f in RUN_FIGURES[name]), f"{link}: nothing to draw it from"


def test_default_titles_name_what_is_compared():
    from normlab.reports import default_title

    runs = [{"arch": "s8", "norm": n, "seed": 0} for n in ("bn", "gn", "ln")]
    assert default_title(runs) == "s8: bn, gn, ln compared"
    one = [{"arch": "convmixer", "norm": "ln", "seed": s} for s in (0, 1, 2)]
    assert default_title(one) == "convmixer with ln, seeds 0, 1, 2"
    assert default_title(one[:1]) == "convmixer with ln, seed 0"


def test_report_tells_apart_runs_that_changed_a_recipe_field(tmp_path):
    """The label each run recorded when it ran, never one worked out from today's presets."""
    from normlab.recipes import get_recipe, recipe_label

    for r in _fake_study(tmp_path, norms=("bn",)):
        recipe = get_recipe("reference", **({"label_smoothing": 0.1} if r["seed"] else {}))
        atomic_write_json(tmp_path / report.run_name(r) / "results.json", {**r, "recipe_label": recipe_label(recipe)})
        atomic_write_json(tmp_path / report.run_name(r) / "config.json", {"recipe": {"name": "reference"}})
    proc = run_cli("report", tmp_path / "s8-bn-seed0", tmp_path / "s8-bn-seed1", "--out", tmp_path / "rep")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| bn | reference | 1 |" in md and "| bn | reference label_smoothing=0.1 | 1 |" in md


def test_curves_of_many_runs_keep_their_panels_and_a_style_each(tmp_path):
    # 40 settings with long labels: the legend once filled the figure and squeezed the panels to nothing
    # (matplotlib then warns that constrained_layout was not applied), and tab10's colours repeated.
    import warnings

    from matplotlib.figure import Figure

    runs = _fake_study(tmp_path, norms=("bn",), seeds=(0,))
    folder = tmp_path / report.run_name(runs[0])
    results = [{**runs[0], "recipe": f"fast-b128-ema optimizer=muon muon_lr=0.1 muon_weight_decay={i / 1000}"}
               for i in range(40)]
    seen = []
    real_savefig = Figure.savefig

    def savefig(fig, *args, **kwargs):
        seen.append(fig)
        return real_savefig(fig, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Figure.savefig = savefig
        try:
            report.plot_overlaid_curves([folder] * 40, results, "test", tmp_path / "curves.png")
        finally:
            Figure.savefig = real_savefig
    fig = seen[0]
    assert all(ax.get_position().height > 0.1 for ax in fig.axes)  # the four panels keep their room
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 40  # one legend, below the panels
    assert all(ax.get_legend() is None for ax in fig.axes)
    styles = {(line.get_color(), line.get_linestyle()) for line in fig.axes[0].get_lines()}
    assert len(styles) == 40
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_curves_of_a_few_runs_keep_the_legend_in_the_first_panel():
    assert [s["linestyle"] for s in report.curve_styles(3)] == ["-"] * 3
    assert len({(str(s["color"]), s["linestyle"]) for s in report.curve_styles(80)}) == 80


def _script(*args, env_extra=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(ROOT / "scripts" / "rereport.py"), *map(str, args)],
                          capture_output=True, text=True, env=dict(os.environ, **(env_extra or {})))


def test_rereport_rewrites_a_report_from_its_own_run_list(tmp_path):
    _fake_study(tmp_path / "a", norms=("bn",))
    _fake_study(tmp_path / "b", norms=("gn",), seeds=(0,))
    runs = [tmp_path / "a" / "s8-bn-seed1", tmp_path / "a" / "s8-bn-seed0"]  # an order of the user's own
    assert run_cli("report", *runs, "--out", tmp_path / "rep", "--title", "Mine").returncode == 0
    before = (tmp_path / "rep" / "report.md").read_text()
    proc = _script(tmp_path / "rep")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rep" / "report.md").read_text() == before  # same title, runs and order
    proc = _script(tmp_path / "rep", "--add", tmp_path / "b" / "s8-gn-seed0", "--after", runs[0])
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.startswith("# Mine\n")
    headings = [line.split(":")[0] for line in md.splitlines() if line.startswith("### ")]
    assert headings == ["### ../a/s8-bn-seed1", "### ../b/s8-gn-seed0", "### ../a/s8-bn-seed0"]
    proc = _script(tmp_path / "rep", "--title", "Theirs")
    assert proc.returncode == 0, proc.stderr
    retitled = (tmp_path / "rep" / "report.md").read_text()
    assert retitled.startswith("# Theirs\n") and retitled.count("\n### ") == 3  # the same runs, new title


def test_rereport_errors_are_one_line(tmp_path):
    proc = _script(tmp_path)
    assert proc.returncode == 2 and "report.md not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    _fake_study(tmp_path / "a", norms=("bn",), seeds=(0,))
    assert run_cli("report", tmp_path / "a" / "s8-bn-seed0", "--out", tmp_path / "rep").returncode == 0
    proc = _script(tmp_path / "rep", "--add", tmp_path / "a" / "s8-bn-seed0", "--after", tmp_path / "nowhere")
    assert proc.returncode == 2 and "--after" in proc.stderr and "Traceback" not in proc.stderr


# --- figures drawn again from a run's data -------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, real_data_dir) -> Path:
    """A real, quick run that holds out 100 validation images: its gallery is of that split."""
    out = tmp_path_factory.mktemp("runs") / "s8-bn-seed0"
    proc = run_cli("train", "--norm", "bn", "--train-size", "256", "--val-size", "100", "--epochs", "1",
                   "--data-dir", real_data_dir, "--out", out, "--no-progress", "--precision", "fp32",
                   "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return out


FIGURES = ("curves.png", "misclassified.png", "confusion.png")


def _copy_run(trained_run: Path, tmp_path: Path, *delete: str) -> Path:
    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    for name in delete:
        (run / name).unlink()
    return run


def test_a_run_keeps_the_record_of_its_gallery(trained_run):
    record = json.loads((trained_run / "misclassified.json").read_text())
    assert record["split"] == "val" and record["classes"] == list(CLASSES)
    assert len(record["indices"]) == len(record["true"]) == len(record["pred"]) == 20  # 1 epoch: many wrong
    assert all(t != p for t, p in zip(record["true"], record["pred"]))
    assert record["indices"] == sorted(record["indices"]) and max(record["indices"]) < 100


def test_report_draws_a_runs_missing_figures_again(trained_run, real_data_dir, tmp_path):
    drawn = {name: (trained_run / name).read_bytes() for name in FIGURES}
    run = _copy_run(trained_run, tmp_path, *FIGURES)
    proc = run_cli("report", run, "--out", tmp_path / "rep", env_extra={"NORMLAB_DATA": str(real_data_dir)})
    assert proc.returncode == 0, proc.stderr
    for name in FIGURES:  # the same figures, from metrics.jsonl, confusion_matrix.json, misclassified.json
        assert (run / name).read_bytes() == drawn[name], name
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "![misclassified](../s8-bn-seed0/misclassified.png) ![confusion](../s8-bn-seed0/confusion.png)" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.count("<img ") == 1 + 3 and "not drawn" not in html


def test_a_run_without_a_gallery_record_gets_it_from_its_weights(trained_run, real_data_dir, tmp_path):
    # Runs trained before the record existed: their saved weights, evaluated again, give the same gallery.
    run = _copy_run(trained_run, tmp_path, *FIGURES, "misclassified.json")
    assert report.ensure_run_plots(run, data_dir=real_data_dir) == {}
    assert (run / "misclassified.png").read_bytes() == (trained_run / "misclassified.png").read_bytes()
    # kept, so that the next redraw needs no model
    assert (run / "misclassified.json").read_text() == (trained_run / "misclassified.json").read_text()
    assert all((run / name).is_file() for name in FIGURES)
    before = {name: (run / name).stat().st_mtime_ns for name in FIGURES}
    assert report.ensure_run_plots(run, data_dir=real_data_dir) == {}  # nothing missing: nothing drawn
    assert {name: (run / name).stat().st_mtime_ns for name in FIGURES} == before


def test_prune_weights_keeps_the_gallery_of_a_validation_run_whose_weights_it_drops(trained_run, real_data_dir,
                                                                                      tmp_path):
    import subprocess
    import sys

    # two validation-split runs of one model: the first by path keeps its weights, the other's can go
    first = _copy_run(trained_run, tmp_path / "a", *FIGURES, "misclassified.json")
    second = _copy_run(trained_run, tmp_path / "b", *FIGURES, "misclassified.json")
    script = [sys.executable, str(ROOT / "scripts" / "prune_weights.py"), str(tmp_path)]
    env = dict(os.environ, NORMLAB_DATA=str(real_data_dir))
    dry = subprocess.run(script, capture_output=True, text=True, env=env)
    assert dry.returncode == 0 and "1 of 2 runs' weights are not needed" in dry.stdout, dry.stderr
    assert (second / "model.safetensors").is_file()  # a dry run changes nothing
    proc = subprocess.run([*script, "--apply"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (first / "model.safetensors").is_file() and not (second / "model.safetensors").exists()
    assert (second / "misclassified.json").read_text() == (trained_run / "misclassified.json").read_text()
    assert report.ensure_run_plots(second, data_dir=real_data_dir) == {}  # the gallery, without the weights
    assert (second / "misclassified.png").read_bytes() == (trained_run / "misclassified.png").read_bytes()
    # a run with a test accuracy keeps its weights whatever else its model has
    results = json.loads((first / "results.json").read_text())
    (first / "results.json").write_text(json.dumps({**results, "test_acc": 10.0}))
    shutil.copy(first / "model.safetensors", second / "model.safetensors")
    again = subprocess.run(script, capture_output=True, text=True, env=env)
    assert "1 of 2 runs' weights are not needed" in again.stdout and str(second) in again.stdout


def test_without_the_data_set_the_report_says_the_gallery_is_left_out(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path, *FIGURES)
    proc = run_cli("report", run, "--out", tmp_path / "rep", cwd=tmp_path,
                   env_extra={"NORMLAB_DATA": str(tmp_path / "nowhere"), "NORMLAB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert (run / "curves.png").is_file() and (run / "confusion.png").is_file()
    assert not (run / "misclassified.png").exists()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "misclassified.png" not in md and "![confusion](../s8-bn-seed0/confusion.png)" in md
    assert "*misclassified gallery not drawn: CIFAR-10 was not found (set NORMLAB_DATA to draw it)*" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.count("<img ") == 1 + 2 and "misclassified gallery not drawn" in html


def test_a_gallery_is_not_drawn_from_images_it_was_not_recorded_from(trained_run, real_data_dir, tmp_path):
    run = _copy_run(trained_run, tmp_path, "misclassified.png")
    record = json.loads((run / "misclassified.json").read_text())
    record["true"][0] = (record["true"][0] + 1) % 10  # as if another data set sat in NORMLAB_DATA
    atomic_write_json(run / "misclassified.json", record)
    missing = report.ensure_run_plots(run, data_dir=real_data_dir)
    assert "does not hold this run's val images" in missing["misclassified.png"]
    assert not (run / "misclassified.png").exists()


def test_rereport_redraws_what_a_report_and_its_runs_lack(trained_run, real_data_dir, tmp_path):
    run = _copy_run(trained_run, tmp_path)
    assert run_cli("report", run, "--out", tmp_path / "rep", "--title", "Mine").returncode == 0
    before = (tmp_path / "rep" / "report.md").read_text()
    for f in [*(run / name for name in FIGURES), tmp_path / "rep" / "curves.png", tmp_path / "rep" / "report.html"]:
        f.unlink()
    proc = _script(tmp_path / "rep", env_extra={"NORMLAB_DATA": str(real_data_dir)})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rep" / "report.md").read_text() == before
    assert all((run / name).is_file() for name in FIGURES)
    assert (tmp_path / "rep" / "curves.png").is_file()
    assert (tmp_path / "rep" / "report.html").read_text().count("<img ") == 1 + 3


def _fake_batch_study(out: Path) -> list[dict]:
    results = []
    for r in _fake_study(out / "src", norms=("bn", "gn"), seeds=(0,)):
        for bs in (64, 8):  # as the study runs them: large batches first
            shutil.copytree(out / "src" / f"s8-{r['norm']}-seed0", out / f"s8-{r['norm']}-bs{bs}")
            results.append({**r, "batch_size": bs, "test_acc": r["test_acc"] + bs / 64, "train_size": 1000,
                            "lr": 0.05 * bs / 128})
    shutil.rmtree(out / "src")
    for r in results:
        atomic_write_json(out / report.batch_run_name(r) / "results.json", r)
    return sorted(results, key=lambda r: (-r["batch_size"], r["norm"]))


def test_rereport_rewrites_a_batch_size_report_from_its_folder(tmp_path):
    report.batch_size_report(tmp_path, _fake_batch_study(tmp_path), 0.05)
    before = (tmp_path / "report.md").read_text()
    (tmp_path / "report.html").unlink()
    (tmp_path / "batch_size.png").unlink()
    proc = _script(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.md").read_text() == before  # same runs, order and learning rate
    assert (tmp_path / "batch_size.png").is_file() and (tmp_path / "report.html").is_file()
    proc = _script(tmp_path, "--title", "New")
    assert proc.returncode == 2 and "--title" in proc.stderr and "Traceback" not in proc.stderr


def test_html_reports_embed_figures_as_lossless_webp(tmp_path):
    from PIL import Image, features

    if not features.check("webp"):
        pytest.skip("this Pillow cannot write WebP (the report embeds PNG then)")
    results = _fake_study(tmp_path, norms=("bn",), seeds=(0,))
    report.compare_report(tmp_path, results)
    html = (tmp_path / "report.html").read_text()
    assert html.count('src="data:image/webp;base64,') == 1 + 3 and "data:image/png" not in html
    data, mime = report._embeddable(tmp_path / "s8-bn-seed0" / "confusion.png")
    import io

    with Image.open(io.BytesIO(data)) as webp, Image.open(tmp_path / "s8-bn-seed0" / "confusion.png") as png:
        assert mime == "image/webp" and webp.convert("RGBA").tobytes() == png.convert("RGBA").tobytes()


def test_report_shows_the_training_compute_where_every_run_recorded_it(tmp_path):
    results = _fake_study(tmp_path, norms=("bn",))
    assert "compute (T)" not in report.summary_rows(results, "test")[0]  # runs from before it was recorded
    results = [{**r, "train_macs": 2_456_000_000_000} for r in results]
    assert report.summary_rows(results, "test")[0]["compute (T)"] == "2.46"
