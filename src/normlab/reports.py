"""Plots and reports: training curves, misclassified galleries, confusion matrices, comparisons."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .errors import NormlabError
from .metrics import headline, held_out
from .runs import METRICS, RESULTS, atomic_write_json, atomic_write_text, read_json, read_jsonl, save_figure

# Figures are drawn on bare ``Figure`` objects, which render through the Agg canvas on their own: importing
# pyplot (or calling ``matplotlib.use``) here would pick or switch the backend of whoever imports normlab,
# e.g. a notebook's inline backend.

CURVES = "curves.png"
GALLERY = "misclassified.png"
CONFUSION = "confusion.png"
CONFUSION_DATA = "confusion_matrix.json"
# The first misclassified held-out images (indices into the held-out split, true and predicted classes):
# with the data set, they redraw the gallery without the model.
GALLERY_DATA = "misclassified.json"
GALLERY_SIZE = 20


def curve_panels(held: str) -> list[tuple[str, str]]:
    """(metric key, title) of the reference's 2x2 figure: train loss/accuracy, held-out loss/accuracy."""
    return [("train_loss", "Training loss"), ("train_acc", "Training accuracy (%)"),
            (f"{held}_loss", f"{held.capitalize()} loss"), (f"{held}_acc", f"{held.capitalize()} accuracy (%)")]


def plot_curves(rows: list[dict], held: str, path: Path, title: str = "") -> None:
    """The reference's 2x2 figure: train loss, train accuracy, held-out loss, held-out accuracy."""
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 7), constrained_layout=True)
    axes = fig.subplots(2, 2)
    panels = curve_panels(held)
    for ax, (key, label) in zip(axes.flat, panels):
        ax.plot(epochs, [r[key] for r in rows], marker="o", ms=3)
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    save_figure(fig, path, dpi=100)


def plot_misclassified(images: torch.Tensor, true: torch.Tensor, pred: torch.Tensor, classes, path: Path,
                       count: int = 20, title: str = "") -> None:
    """A grid of the first ``count`` misclassified held-out images, in their real colours."""
    wrong = (true != pred).nonzero().flatten()[:count]
    cols = 5
    rows = max(1, -(-len(wrong) // cols))
    fig = Figure(figsize=(cols * 2, rows * 2.3), constrained_layout=True)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist()):
        ax.imshow(images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(f"true: {classes[true[i]]}\npred: {classes[pred[i]]}", fontsize=9)
    if title:
        fig.suptitle(title)
    save_figure(fig, path, dpi=100)


def plot_confusion(cm: torch.Tensor, classes, path: Path, title: str = "Confusion matrix (test)") -> None:
    fig = Figure(figsize=(7.5, 6.5), constrained_layout=True)
    ax = fig.subplots()
    im = ax.imshow(cm.numpy(), cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    vmax = int(cm.max())
    for i in range(len(classes)):
        for j in range(len(classes)):
            v = int(cm[i, j])
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    color="white" if v > vmax / 2 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title)
    save_figure(fig, path, dpi=100)


def misclassified_record(held: str, labels: torch.Tensor, pred: torch.Tensor, classes,
                         count: int = GALLERY_SIZE) -> dict:
    """What the gallery shows, as data: the held-out split's name and, for its first ``count`` misclassified
    images, their indices into that split and their true and predicted classes."""
    labels, pred = labels.cpu(), pred.cpu()
    wrong = (labels != pred).nonzero().flatten()[:count]
    return {"split": held, "indices": wrong.tolist(), "true": labels[wrong].tolist(),
            "pred": pred[wrong].tolist(), "classes": list(classes)}


def run_plots(folder: Path, rows, held: str, images, labels, classes, pred, cm) -> None:
    """A finished run's figures: its curves, and the gallery and confusion matrix of its final model on
    the held-out split ``held`` ("test", or "val" for a run that held out a validation split). The gallery's
    images are also recorded in ``misclassified.json``, so that it can be redrawn without the model."""
    folder = Path(folder)
    atomic_write_json(folder / GALLERY_DATA, misclassified_record(held, labels, pred, classes))
    plot_curves(rows, held, folder / CURVES)
    plot_misclassified(images, labels, pred, classes, folder / GALLERY)
    plot_confusion(cm, classes, folder / CONFUSION, title=f"Confusion matrix ({held})")


# --- redrawing a finished run's figures from its data ---------------------------------------------------
def _evaluation_api():
    """``(load_model, evaluate, eval_batch, split)``, imported on first use and only here: a report whose
    runs keep their figures (or their gallery record) never needs the model and evaluation stack."""
    from .data import split
    from .evaluation import eval_batch, evaluate
    from .weights import load_model

    return load_model, evaluate, eval_batch, split


def _first_misclassified(folder: Path, held: str, images, labels, classes) -> dict:
    """The gallery record of the run in ``folder``, from its saved weights evaluated in float32 as the run
    evaluated its final model. Only as many evaluation batches as it takes to find the gallery's images:
    the same batches as a whole pass, so the same predictions, at a small part of its cost."""
    load_model, evaluate, eval_batch, _ = _evaluation_api()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(folder).to(device)
    step, preds, wrong = eval_batch(device), [], 0
    for i in range(0, len(images), step):
        preds.append(evaluate(model, images[i:i + step], labels[i:i + step], device, "fp32")["pred"])
        wrong += int((preds[-1] != labels[i:i + step]).sum())
        if wrong >= GALLERY_SIZE:
            break
    pred = torch.cat(preds)
    return misclassified_record(held, labels[:len(pred)], pred, classes)


class _DataSource:
    """CIFAR-10 for redrawing galleries, loaded once, on first need. Never downloaded: a report should not
    start a 170 MB download, so without the data set a gallery is left out and the report says why."""

    def __init__(self, data=None, data_dir=None):
        self.data, self.data_dir, self.error = data, data_dir, None

    def get(self):
        if self.data is None and self.error is None:
            from .data import ARCHIVE, FOLDER, TRAIN_FILES, load_cifar10, resolve_data_dir

            root = resolve_data_dir(self.data_dir)
            if not any((root / name).exists() for name in (FOLDER, ARCHIVE, TRAIN_FILES[0])):
                self.error = "CIFAR-10 was not found (set NORMLAB_DATA to draw it)"
            else:
                try:
                    self.data = load_cifar10(self.data_dir, download_missing=False)
                except NormlabError as exc:
                    self.error = str(exc)
        return self.data


def _final_split(folder: Path, results: dict) -> str:
    """The split the run's final model was judged on, which its gallery and confusion matrix show. Runs
    from before confusion_matrix.json named its split were judged on the test set, even those that held
    out a validation split for their per-epoch figures."""
    if (folder / CONFUSION_DATA).is_file():
        return read_json(folder / CONFUSION_DATA).get("split", "test")
    return held_out(results)


def _held_images(data, held: str, results: dict):
    """(images, labels) of the split ``held`` ("test" or "val") of the run whose ``results`` these are."""
    if held == "test":
        return data.test_x, data.test_y
    split = _evaluation_api()[-1]
    _, _, (_, images, labels) = split(data, None, results.get("val_size") or 0)
    return images, labels


def keep_gallery_record(folder: Path, data) -> bool:
    """Give the finished run in ``folder`` its gallery record from its saved weights, as a report does for
    a run without one, so that its gallery can still be drawn once the weights are gone. True if one was
    written; False if it had one already."""
    folder = Path(folder)
    if (folder / GALLERY_DATA).is_file():
        return False
    results = read_json(folder / "results.json")
    held = _final_split(folder, results)
    images, labels = _held_images(data, held, results)
    atomic_write_json(folder / GALLERY_DATA, _first_misclassified(folder, held, images, labels, data.classes))
    return True


def _gallery(folder: Path, results: dict, source: _DataSource) -> str | None:
    """Draw ``folder``'s gallery from its record and the data set; a run without a record (trained before
    runs kept one) gets it from its saved weights, re-evaluated in float32 on the split its final model was
    judged on, as the run itself evaluated it, and keeps it. Returns why it could not be drawn, else None."""
    data = source.get()
    if data is None:
        return f"misclassified gallery not drawn: {source.error}"
    record = read_json(folder / GALLERY_DATA) if (folder / GALLERY_DATA).is_file() else None
    held = record["split"] if record else _final_split(folder, results)
    images, labels = _held_images(data, held, results)
    mismatch = f"misclassified gallery not drawn: the CIFAR-10 found does not hold this run's {held} images"
    if (folder / CONFUSION_DATA).is_file():  # the held-out labels must be the ones the run was judged on
        counts = torch.tensor(read_json(folder / CONFUSION_DATA)["counts"])
        if counts.sum(1).tolist() != torch.bincount(labels, minlength=len(counts)).tolist():
            return mismatch
    if record is None:
        try:
            record = _first_misclassified(folder, held, images, labels, data.classes)
        except NormlabError as exc:  # e.g. weights of an architecture this normlab no longer builds
            return f"misclassified gallery not drawn: {exc}"
        atomic_write_json(folder / GALLERY_DATA, record)
    index = torch.tensor(record["indices"], dtype=torch.long)
    if labels[index].tolist() != record["true"]:
        return mismatch
    plot_misclassified(images[index], labels[index], torch.tensor(record["pred"], dtype=torch.long),
                       record.get("classes") or data.classes, folder / GALLERY)
    return None


def _ensure_run_plots(folder: Path, source: _DataSource) -> dict[str, str]:
    folder = Path(folder)
    needed = [f for f in (CURVES, GALLERY, CONFUSION) if not (folder / f).is_file()]
    if not needed:
        return {}
    if not (folder / RESULTS).is_file():
        raise NormlabError(f"{folder}: not a finished run (no {RESULTS}); its figures are drawn from its data")
    results = read_json(folder / RESULTS)
    held = held_out(results)
    missing = {}
    if CURVES in needed:
        rows = read_jsonl(folder / METRICS)
        if rows:
            plot_curves(rows, held, folder / CURVES)
        else:
            missing[CURVES] = f"curves not drawn: {METRICS} is missing or empty"
    if CONFUSION in needed:
        if (folder / CONFUSION_DATA).is_file():
            saved = read_json(folder / CONFUSION_DATA)
            plot_confusion(torch.tensor(saved["counts"]), saved["classes"], folder / CONFUSION,
                           title=f"Confusion matrix ({_final_split(folder, results)})")
        else:
            missing[CONFUSION] = f"confusion matrix not drawn: {CONFUSION_DATA} is missing"
    if GALLERY in needed and (why := _gallery(folder, results, source)):
        missing[GALLERY] = why
    return missing


def ensure_run_plots(folder: Path, data=None, data_dir=None) -> dict[str, str]:
    """Draw whichever of a finished run's figures are missing, from its data: ``curves.png`` from
    ``metrics.jsonl``, ``confusion.png`` from ``confusion_matrix.json``, ``misclassified.png`` from
    ``misclassified.json`` and the data set (see :func:`_gallery`). ``data``: CIFAR-10 if already loaded;
    else it is read from ``data_dir`` (default: ``NORMLAB_DATA``, then ``./data``) when a gallery needs it.
    Figures that exist are left as they are. Returns ``{file name: why it was not drawn}`` for those that
    could not be drawn (e.g. a gallery without the data set); empty when the run has all its figures."""
    return _ensure_run_plots(Path(folder), _DataSource(data, data_dir))


def _ensure_all(folders: list[Path], data_dir=None) -> list[dict[str, str]]:
    """:func:`ensure_run_plots` for each run of a report, sharing one load of the data set."""
    source = _DataSource(data_dir=data_dir)
    return [_ensure_run_plots(Path(f), source) for f in folders]


def _fmt(values: list[float], digits: int = 2) -> str:
    from .metrics import mean_std

    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    m, sd = mean_std(values)
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def run_name(r: dict) -> str:
    return f"{r['arch']}-{r['norm']}-seed{r['seed']}"


# What may differ between the runs of one report besides norm and seed: any setting that does becomes a
# table column (and a curve label); those shared by every run are stated once in the introduction.
SETTINGS = {"arch": "arch", "recipe": "recipe", "epochs": "epochs", "lr": "peak lr", "precision": "precision"}
_TEXT_COLUMNS = {"arch", "norm", "recipe", "precision"}


def _varying(results: list[dict]) -> list[str]:
    return [k for k in SETTINGS if len({r.get(k) for r in results}) > 1]


def _group_key(r: dict, varying: list[str]) -> tuple:
    """A run's table row: its norm and its value of every varying setting."""
    return (r["norm"], *(r.get(k) for k in varying))


def _groups(results: list[dict], varying: list[str]) -> dict[tuple, list[dict]]:
    """The runs grouped by ``_group_key``: one table row (a mean over seeds) each."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault(_group_key(r, varying), []).append(r)
    return groups


def _group_label(key: tuple, varying: list[str]) -> str:
    """E.g. "convmixer bn lr=0.2 bf16": the architecture (where it varies) first, then the norm."""
    norm, *values = key
    words = [f"{k}={v:g}" if isinstance(v, float) else f"{v}" for k, v in zip(varying, values)]
    if "arch" in varying:
        return " ".join([words.pop(varying.index("arch")), norm, *words])
    return " ".join([norm, *words])


# Up to this many groups the legend sits in the first panel; past it, it goes below the four panels, where it
# cannot cover a curve (at 36 groups it once filled the figure and squeezed the panels to nothing).
LEGEND_INSIDE_MAX = 6
LINE_STYLES = ("-", "--", ":", "-.")


def curve_styles(count: int) -> list[dict]:
    """``count`` distinguishable line styles: tab10's colours up to 10 groups, else tab20's 20 colours, each
    with up to four dash patterns (80 before a style repeats)."""
    if count <= 10:
        return [{"color": matplotlib.colormaps["tab10"](i), "linestyle": "-"} for i in range(count)]
    colors = matplotlib.colormaps["tab20"].colors
    return [{"color": colors[i % 20], "linestyle": LINE_STYLES[(i // 20) % len(LINE_STYLES)]} for i in range(count)]


def plot_overlaid_curves(folders: list[Path], results: list[dict], held: str, path: Path) -> None:
    """The 2x2 curves of every run on one figure, one style per table row (norm and varying settings)."""
    varying = _varying(results)
    keys = list(_groups(results, varying))
    styles = dict(zip(keys, curve_styles(len(keys))))
    below = len(keys) > LEGEND_INSIDE_MAX
    labels = {key: _group_label(key, varying) for key in keys}
    columns = 2 if below and max(map(len, labels.values())) <= 50 else 1
    legend_rows = -(-len(keys) // columns) if below else 0
    fig = Figure(figsize=(11, 7.5 + 0.2 * legend_rows), constrained_layout=True)
    axes = fig.subplots(2, 2)
    panels = curve_panels(held)
    labelled = set()
    for folder, r in zip(folders, results):
        rows = read_jsonl(folder / METRICS)
        key = _group_key(r, varying)
        label = None if key in labelled else labels[key]
        labelled.add(key)
        for ax, (metric, title) in zip(axes.flat, panels):
            ax.plot([x["epoch"] for x in rows], [x[metric] for x in rows], alpha=0.8, label=label, **styles[key])
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
    if below:
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=columns, fontsize=8,
                   frameon=False)
    else:
        axes[0, 0].legend()
    save_figure(fig, path, dpi=100)


# Columns shown when some run has the figure ("-" for the runs without it): flip TTA for runs trained with
# flips, the raw weights' for weight-averaged runs; of the held-out split, "test" or "val".
OPTIONAL_COLUMNS = (("{held} acc, flip TTA", "{held}_acc_flip_tta"), ("{held} acc, raw weights", "{held}_acc_raw"))


def summary_rows(results: list[dict], held: str) -> list[dict]:
    """One row per group of runs (mean ± std over seeds). Only ``held``'s figures are shown: a report of
    validation-split runs shows no test figures, even for runs from before they stopped recording them."""
    varying = _varying(results)
    optional = [(label.format(held=held), key.format(held=held)) for label, key in OPTIONAL_COLUMNS]
    optional = [(label, key) for label, key in optional if any(key in r for r in results)]
    compute = all("train_macs" in r for r in results)
    rows = []
    for (norm, *values), rs in _groups(results, varying).items():
        settings = {SETTINGS[k]: f"{v:g}" if isinstance(v, float) else str(v) for k, v in zip(varying, values)}
        rows.append({
            **({"arch": settings.pop("arch")} if "arch" in settings else {}), "norm": norm, **settings,
            "runs": len(rs), "params": f"{rs[0]['params']:,}",
            "train acc": _fmt([r["train_acc"] for r in rs]), f"{held} acc": _fmt([r[f"{held}_acc"] for r in rs]),
            **{label: _fmt([r[key] for r in rs]) if all(key in r for r in rs) else "-" for label, key in optional},
            f"best {held} acc (epoch)": ", ".join(f"{r[f'best_{held}_acc']:.2f} ({r['best_epoch']})" for r in rs),
            "time (s)": _fmt([r["seconds"] for r in rs], 0),
            "images/s": _fmt([r["images_per_second"] for r in rs], 0),
            # the training compute (forward multiply-adds x images seen), recorded since it was defined
            **({"compute (T)": f"{rs[0]['train_macs'] / 1e12:.2f}"} if compute else {}),
        })
    return rows


def _md_table(rows: list[dict]) -> list[str]:
    keys = list(rows[0])
    return (["| " + " | ".join(keys) + " |",
             "|" + "|".join("---" if k in _TEXT_COLUMNS else "---:" for k in keys) + "|"]
            + ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows])


def _intro(results: list[dict], held: str) -> str:
    """One sentence of what every run shares (settings that differ are table columns instead)."""
    first, varying = results[0], _varying(results)
    seeds = sorted({r["seed"] for r in results})
    shared = []
    if "recipe" not in varying:
        shared.append(f"Recipe `{first['recipe']}`")
    if "lr" not in varying and first.get("lr") is not None:
        shared.append(f"peak lr {first['lr']:g}")
    if "epochs" not in varying:
        shared.append(f"{first['epochs']} epochs")
    shared.append(f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
    def each(key):  # a setting the runs may not share: every value, in the order the runs have them
        return " or ".join(str(v) for v in dict.fromkeys(r.get(key, "?") for r in results))

    where = f"on {each('device')} ({each('threads')} threads), torch {each('torch')}"
    shared.append(where if "precision" in varying else f"{first['precision']} {where}")
    head = ", ".join(shared)
    return (f"{head[0].upper()}{head[1:]}. Accuracies in percent at the final epoch"
            f"{' (mean ± sample std over seeds)' if len(seeds) > 1 else ''}; the best epoch's {held} accuracy "
            f"beside them. "
            + ("Compute: the training's forward multiply-adds in trillions (images seen x multiply-adds per "
               "image). " if all("train_macs" in r for r in results) else "")
            + ("Val accuracy is the final model's on the held-out images: these runs held out a validation "
               "split, and they are judged on it, not on the test set." if held == "val" else
               "Test accuracy is computed in float32 from the saved weights."))


def default_title(results: list[dict]) -> str:
    """'s8: bn, gn, ln compared' for several norms; 'convmixer with ln, seeds 0, 1, 2' for one."""
    archs = ", ".join(dict.fromkeys(r["arch"] for r in results))
    norms = list(dict.fromkeys(r["norm"] for r in results))
    if len(norms) > 1:
        return f"{archs}: {', '.join(norms)} compared"
    seeds = list(dict.fromkeys(r["seed"] for r in results))
    return f"{archs} with {norms[0]}, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def compare_report(out: Path, results: list[dict], title: str | None = None, notes: list[str] | None = None,
                   folders: list[Path] | None = None, data_dir=None) -> None:
    """``report.md`` and a self-contained ``report.html`` (images embedded) for a comparison. ``folders``:
    each result's run folder (default: ``out/<arch>-<norm>-seed<seed>``, as ``normlab compare`` writes).
    A run's missing figures are drawn first from its data (:func:`ensure_run_plots`; ``data_dir``: where
    the data set is, for galleries)."""
    import os

    folders = [Path(f) for f in folders] if folders else [out / run_name(r) for r in results]
    names = [Path(os.path.relpath(f, out)).as_posix() for f in folders]  # links from the report's folder
    missing = _ensure_all(folders, data_dir)
    held = held_out(results[0])  # the same for every run (study.report_runs refuses a mix)
    title = title or default_title(results)
    intro = _intro(results, held)
    rows = summary_rows(results, held)
    plot_overlaid_curves(folders, results, held, out / CURVES)
    md = [f"# {title}", "", intro, ""] + _md_table(rows) + [""] + (notes or []) + [
        "", "## Training curves", "", "![curves](curves.png)", "", "## Per run", ""]
    for r, name, gone in zip(results, names, missing):
        md += [f"### {name}: {headline(r)}", "", *_figures_md(name, (GALLERY, CONFUSION), gone), ""]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_text(out / "report.html",
                      render_html(out, title, intro, rows, results, notes or [], names, missing))


# Each run figure's alt text in markdown and, after the run's name, in HTML.
_MD_ALT = {CURVES: "curves", GALLERY: "misclassified", CONFUSION: "confusion"}
_HTML_ALT = {CURVES: "curves", GALLERY: "misclassified", CONFUSION: "confusion matrix"}


def _figures_md(name: str, files, missing: dict[str, str]) -> list[str]:
    """A run's figures on one line, then a line saying why any of them is not there."""
    line = " ".join(f"![{_MD_ALT[f]}]({name}/{f})" for f in files if f not in missing)
    lines = [line] if line else []
    for f in files:
        if f in missing:
            lines += ["", f"*{missing[f]}*"] if lines else [f"*{missing[f]}*"]
    return lines


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#1d232a;background:#fbfbfd}h1{margin-bottom:.2em}table{border-collapse:collapse;margin:1em 0}
th,td{padding:.4em .8em;border-bottom:1px solid #dde;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#eef1f6}.runs{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1.2em}
.card{background:#fff;border:1px solid #e3e6ee;border-radius:8px;padding:.8em}img{max-width:100%;height:auto}
.note{color:#555}"""


def _embeddable(path: Path) -> tuple[bytes, str]:
    """The image at ``path`` and its MIME type, as lossless WebP where Pillow can write it: the same pixels
    as matplotlib's PNG in about a third of the bytes, which matters in a page that embeds every figure of
    dozens of runs (base64 adds another third)."""
    import io

    from PIL import Image, features

    if not features.check("webp"):
        return path.read_bytes(), "image/png"
    buf = io.BytesIO()
    with Image.open(path) as im:
        im.save(buf, "WEBP", lossless=True)
    return buf.getvalue(), "image/webp"


def _img(path: Path, alt: str) -> str:
    import base64
    from html import escape

    data, mime = _embeddable(path)
    return f'<img alt="{escape(alt)}" src="data:{mime};base64,{base64.b64encode(data).decode()}">'


def run_cards_html(out: Path, results: list[dict], names: list[str],
                   missing: list[dict[str, str]] | None = None) -> str:
    """One card per run (its curves, misclassified gallery and confusion matrix), images embedded;
    ``names``: each run's folder relative to ``out``; ``missing``: per run, the figures it lacks and why
    (from :func:`ensure_run_plots`), said in the card instead."""
    from html import escape

    cards = []
    for r, name, gone in zip(results, names, missing or [{}] * len(results)):
        figures = "".join(f'<p class="note">{escape(gone[f])}</p>' if f in gone
                          else _img(out / name / f, f"{name} {_HTML_ALT[f]}") for f in (CURVES, GALLERY, CONFUSION))
        cards.append(f'<div class="card"><h3>{escape(name)}: {headline(r)}</h3>{figures}</div>')
    return f'<div class="runs">{"".join(cards)}</div>'


def run_cards_md(results: list[dict], names: list[str], missing: list[dict[str, str]] | None = None) -> list[str]:
    md = []
    for r, name, gone in zip(results, names, missing or [{}] * len(results)):
        md += [f"### {name}: {headline(r)}", "", *_figures_md(name, (CURVES, GALLERY, CONFUSION), gone), ""]
    return md


def render_html(out: Path, title: str, intro: str, rows: list[dict], results: list[dict], notes: list[str],
                names: list[str], missing: list[dict[str, str]] | None = None) -> str:
    from html import escape

    head = "".join(f"<th>{escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    cards = run_cards_html(out, results, names, missing)
    note_html = "".join(f'<p class="note">{escape(n)}</p>' for n in notes)
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1><p>{escape(intro)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note_html}"
            f"<h2>Training curves</h2>{_img(out / CURVES, 'training curves')}"
            f"<h2>Per run</h2>{cards}</body></html>\n")


def batch_run_name(r: dict) -> str:
    return f"{r['arch']}-{r['norm']}-bs{r['batch_size']}"


def plot_batch_curves(out: Path, results: list[dict], path: Path) -> None:
    """Held-out accuracy per epoch, one panel per norm, one line per batch size (darker = larger)."""
    norms = list(dict.fromkeys(r["norm"] for r in results))
    sizes = sorted({r["batch_size"] for r in results})
    cmap = matplotlib.colormaps["viridis"]
    fig = Figure(figsize=(4.6 * len(norms), 3.8), constrained_layout=True)
    axes = fig.subplots(1, len(norms), sharey=True, squeeze=False)
    for ax, norm in zip(axes[0], norms):
        for r in sorted((r for r in results if r["norm"] == norm), key=lambda r: r["batch_size"]):
            rows = read_jsonl(out / batch_run_name(r) / METRICS)
            held = held_out(r)
            colour = cmap(sizes.index(r["batch_size"]) / max(1, len(sizes) - 1))
            ax.plot([x["epoch"] for x in rows], [x[f"{held}_acc"] for x in rows], color=colour,
                    label=f"batch {r['batch_size']}")
            ax.set_ylabel(f"{held} accuracy (%)")
        ax.set_title(norm)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    save_figure(fig, path, dpi=100)


def batch_size_report(out: Path, results: list[dict], base_lr: float, data_dir=None) -> None:
    """Held-out accuracy (test, or val where the runs held out a validation split) against batch size, one
    line per norm, with a table, as markdown and HTML. The runs' missing figures are drawn first from their
    data (:func:`ensure_run_plots`; ``data_dir``: where the data set is, for galleries)."""
    from html import escape

    names = [batch_run_name(r) for r in results]
    missing = _ensure_all([out / name for name in names], data_dir)
    norms = list(dict.fromkeys(r["norm"] for r in results))
    sizes = sorted({r["batch_size"] for r in results})
    acc = {(r["norm"], r["batch_size"]): r for r in results}
    held = held_out(results[0])
    fig = Figure(figsize=(7.5, 4.8), constrained_layout=True)
    ax = fig.subplots()
    for norm in norms:
        xs = [b for b in sizes if (norm, b) in acc]
        ax.plot(xs, [acc[norm, b][f"{held}_acc"] for b in xs], marker="o", label=norm)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_xlabel("batch size (learning rate scaled linearly)")
    ax.set_ylabel(f"{held} accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{held.capitalize()} accuracy against batch size")
    save_figure(fig, out / "batch_size.png", dpi=100)

    first = results[0]
    subset = f"the first {first['train_size']:,} training images" if first.get("train_size") else "all 50,000 training images"
    total = sum(r["seconds"] for r in results)
    intro = (f"{first['arch']} with {', '.join(norms)}; recipe `{first['recipe']}` for {first['epochs']} epochs on "
             f"{subset}, seed {first['seed']}, {first['precision']} on {first['device']}. Learning rate = "
             f"{base_lr:g} x batch / {128} (linear scaling). BN is evaluated with its running statistics, as deployed. "
             f"All {len(results)} runs took {total / 60:.0f} minutes here.")
    head = ["batch"] + [f"{n} {held} acc" for n in norms] + ["lr"]
    rows = [[str(b)] + [f"{acc[n, b][f'{held}_acc']:.2f}" if (n, b) in acc else "" for n in norms]
            + [f"{base_lr * b / 128:.6g}"] for b in sizes]
    plot_batch_curves(out, results, out / "curves.png")
    md = (["# Batch-size study", "", intro, "", "![batch size](batch_size.png)", "",
           "| " + " | ".join(head) + " |", "|" + "---:|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
          + ["", "## Held-out accuracy per epoch", "", "![curves](curves.png)", "", "## Per run", ""]
          + run_cards_md(results, names, missing))
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    table = ("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
             + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows) + "</tbody></table>")
    html = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Batch-size study</title>"
            f"<style>{_CSS}</style></head><body><h1>Batch-size study</h1><p>{escape(intro)}</p>"
            f"{_img(out / 'batch_size.png', f'{held} accuracy against batch size')}{table}"
            f"<h2>Held-out accuracy per epoch</h2>{_img(out / 'curves.png', 'accuracy per epoch')}"
            f"<h2>Per run</h2>{run_cards_html(out, results, names, missing)}</body></html>\n")
    atomic_write_text(out / "report.html", html)
