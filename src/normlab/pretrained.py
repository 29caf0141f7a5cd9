"""Pretrained defaults: one trained model per norm, shipped inside the package.

The folder ``normlab/pretrained/`` holds, per norm, ``<norm>.safetensors`` (the weights, written by
normlab, with arch and norm in their metadata) and ``<norm>.md`` (its model card). Both are produced by
:func:`promote` from a finished run folder (``scripts/promote_pretrained.py RUN``): the card is generated
from the run's own ``config.json`` and ``results.json``, never written by hand.

``$NORMLAB_PRETRAINED_DIR`` (or the ``folder`` argument) points elsewhere, for tests and experiments.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .config import EPOCH_BUDGET, PARAM_BUDGET
from .errors import NormlabError
from .norms import check_norm
from .runs import CONFIG, RESULTS, WEIGHTS, atomic_write_bytes, atomic_write_text, read_json

ENV = "NORMLAB_PRETRAINED_DIR"
PACKAGED = Path(__file__).with_name("pretrained")


def pretrained_dir(folder: str | os.PathLike | None = None) -> Path:
    """Where the pretrained files live: ``folder``, else ``$NORMLAB_PRETRAINED_DIR``, else the package's."""
    return Path(folder or os.environ.get(ENV) or PACKAGED)


def _check_norm(norm: str) -> None:
    check_norm(norm, where=" for --pretrained")


def weights_path(norm: str, folder: str | os.PathLike | None = None) -> Path:
    """The weights file of the pretrained ``norm`` model; a one-line error if none is packaged."""
    _check_norm(norm)
    path = pretrained_dir(folder) / f"{norm}.safetensors"
    if not path.is_file():
        raise NormlabError(
            f"no pretrained {norm} model is installed ({path} is missing); train one with `normlab train "
            f"--arch convmixer-s16 --norm {norm} --recipe fast` and pass its run folder instead, or install it as "
            f"the default with `python scripts/promote_pretrained.py RUN_FOLDER`")
    return path


def load_pretrained(norm: str, folder: str | os.PathLike | None = None) -> torch.nn.Module:
    """The pretrained ``norm`` model in eval mode: float images in [0, 1], (N, 3, 32, 32) -> logits (N, 10)."""
    from safetensors import safe_open

    from .weights import load_model

    path = weights_path(norm, folder)
    model = load_model(path)  # one-line errors for unreadable or foreign files
    with safe_open(str(path), framework="pt") as fh:
        found = (fh.metadata() or {}).get("norm")
    if found != norm:
        raise NormlabError(f"{path}: holds a {found} model, not {norm}; reinstall it with "
                           "`python scripts/promote_pretrained.py RUN_FOLDER`")
    return model


def pretrained_card(norm: str, folder: str | os.PathLike | None = None) -> str:
    """The model card (markdown) of the pretrained ``norm`` model."""
    path = weights_path(norm, folder).with_suffix(".md")
    if not path.is_file():
        raise NormlabError(f"{path}: the pretrained {norm} model has no model card; reinstall it with "
                           "`python scripts/promote_pretrained.py RUN_FOLDER`")
    return path.read_text()


# --- installing a run as the default -----------------------------------------------------------------
def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


LABELS = {"test_acc_flip_tta": "test accuracy with flip test-time augmentation (not the headline figure)"}


def after_training_rows(export: dict | None = None, robustness: dict | None = None) -> list[tuple[str, str]]:
    """Model-card rows from an export card (``normlab export``'s export.json) and one model's entry of
    ``normlab robustness``'s robustness.json."""
    rows = []
    if export:
        files = export.get("files", {})
        for name, info in files.items():
            rows.append((f"exported `{name}`", f"{info['bytes'] / 1024:,.0f} KiB, test accuracy {info['test_acc']:.2f}%"))
        on = f"{export.get('threads')} threads" + (f" of {export['cpu']}" if export.get("cpu") else "")
        for runtime, ms in export.get("latency_ms", {}).items():
            rows.append((f"latency, {runtime}", f"{ms['1']:.2f} ms at batch 1, {ms['256']:.1f} ms at batch 256 ({on})"))
    if robustness:
        line = (f"{robustness['mean_corruption_acc']:.2f}% mean over 14 corruptions x 5 severities "
                f"(clean {robustness['clean_acc']:.2f}%)")
        if robustness.get("adapted"):
            line += f"; {robustness['adapted']['mean_corruption_acc']:.2f}% with BatchNorm statistics adapted"
        rows.append(("corruption accuracy (`normlab robustness`)", line))
    return rows


def model_card(results: dict, config: dict, run_name: str, sha256: str,
               after: list[tuple[str, str]] | None = None) -> str:
    """Markdown model card built only from a run's results.json and config.json, and ``after``: rows
    measured after training (:func:`after_training_rows`)."""
    r, recipe = results, config.get("recipe", {})
    data = "all 50,000 training images" if not r.get("train_size") and not r.get("val_size") else (
        f"train_size {r.get('train_size') or 'all'}, {r.get('val_size') or 0:,} images held out for validation")
    rows = [
        ("architecture", f"`{r['arch']}`"),
        ("norm", f"`{r['norm']}`"),
        ("parameters", f"{r['params']:,} (every parameter, trainable or frozen)"),
        ("epochs", r["epochs"]),
        ("recipe", " ".join([f"`{r['recipe']}`", *(r.get("recipe_label") or r["recipe"]).split()[1:]])),
        ("seed", r["seed"]),
        ("test accuracy (single view, float32)", _pct(r.get("test_acc"))),
    ]
    rows += [(LABELS.get(key, key.replace("_", " ")), _pct(v)) for key, v in r.items()
             if key.startswith("test_acc_") and isinstance(v, (int, float))]  # e.g. flip TTA, reported apart
    if "best_val_acc" in r:
        rows.append(("best validation accuracy", f"{_pct(r['best_val_acc'])} (epoch {r.get('best_epoch')})"))
    if "val_acc" in r:
        rows.append(("final validation accuracy", _pct(r["val_acc"])))
    rows += [
        ("training data", data),
        ("training time", f"{r['seconds']:,.0f} s for {r['epochs']} epochs (per-epoch evaluation included)"),
        ("training throughput", f"{r['images_per_second']:,.0f} images/s"),
        ("device / precision / threads", f"{r['device']} / {r['precision']} / {r.get('threads', 'n/a')}"),
        ("torch / normlab", f"{r.get('torch')} / {r.get('normlab')}"),
        ("source run", f"`{run_name}`"),
        ("weights sha256", f"`{sha256}`"),
    ]
    lines = [f"# Pretrained `{r['norm']}` model: `{r['arch']}`", "",
             "Generated by `scripts/promote_pretrained.py` from the run's config.json and results.json; "
             "do not edit by hand.", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    if after:
        lines += ["", "## After training", "", "Written from `normlab export` and `normlab robustness` outputs "
                  "(results/export, results/robustness).", "", "| field | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in after]
    lines += ["", "## Recipe", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in recipe.items()]
    return "\n".join(lines) + "\n"


def promote(run: str | os.PathLike, folder: str | os.PathLike | None = None, *,
            export: str | os.PathLike | None = None, robustness: str | os.PathLike | None = None) -> Path:
    """Install the finished run ``run`` as the pretrained default for its norm: copy its weights to
    ``<folder>/<norm>.safetensors`` and write ``<norm>.md`` from its run data (and, where given, an export
    folder's export.json and a robustness.json holding a ``pretrained-<norm>`` entry). Returns the weights
    path."""
    from .weights import load_model

    run = Path(run)
    if not (run / RESULTS).is_file():
        raise NormlabError(f"{run}: not a finished run folder (no {RESULTS}); train it to the end first")
    results, config = read_json(run / RESULTS), read_json(run / CONFIG)
    norm = results.get("norm")
    _check_norm(norm)
    if results.get("val_size") or "test_acc" not in results:
        raise NormlabError(f"{run}: this run held out a validation split and was never tested; a pretrained "
                           "default is trained on all 50,000 images (train it without --val-size)")
    if results["params"] > PARAM_BUDGET or results["epochs"] > EPOCH_BUDGET:
        raise NormlabError(f"{run}: {results['params']:,} parameters / {results['epochs']} epochs is over the "
                           f"budget ({PARAM_BUDGET:,} / {EPOCH_BUDGET}); only in-budget runs become defaults")
    load_model(run)  # refuses weights normlab cannot load
    exported = read_json(Path(export) / "export.json") if export else None
    robust = None
    if robustness:  # checked before anything is installed
        models = read_json(robustness).get("models", {})
        if f"pretrained-{norm}" not in models:
            raise NormlabError(f"{robustness}: holds no pretrained-{norm} entry; run normlab robustness "
                               f"--pretrained {norm} first")
        robust = models[f"pretrained-{norm}"]
    blob = (run / WEIGHTS).read_bytes()
    dest = pretrained_dir(folder) / f"{norm}.safetensors"
    atomic_write_bytes(dest, blob)
    atomic_write_text(dest.with_suffix(".md"),
                      model_card(results, config, run.as_posix(), hashlib.sha256(blob).hexdigest(),
                                 after_training_rows(exported, robust)))
    return dest
