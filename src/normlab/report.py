"""Plots and reports: training curves, misclassified galleries, confusion matrices, comparisons."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .runs import save_figure  # noqa: E402


def plot_curves(rows: list[dict], held: str, path: Path, title: str = "") -> None:
    """The reference's 2x2 figure: train loss, train accuracy, held-out loss, held-out accuracy."""
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    panels = [("train_loss", "Training loss"), ("train_acc", "Training accuracy (%)"),
              (f"{held}_loss", f"{held.capitalize()} loss"), (f"{held}_acc", f"{held.capitalize()} accuracy (%)")]
    for ax, (key, label) in zip(axes.flat, panels):
        ax.plot(epochs, [r[key] for r in rows], marker="o", ms=3)
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_misclassified(images: torch.Tensor, true: torch.Tensor, pred: torch.Tensor, classes, path: Path,
                       count: int = 20, title: str = "") -> None:
    """A grid of the first ``count`` misclassified test images, in their real colours."""
    wrong = (true != pred).nonzero().flatten()[:count]
    cols = 5
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2, rows * 2.3), constrained_layout=True)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist()):
        ax.imshow(images[i].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(f"true: {classes[true[i]]}\npred: {classes[pred[i]]}", fontsize=9)
    if title:
        fig.suptitle(title)
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_confusion(cm: torch.Tensor, classes, path: Path, title: str = "Confusion matrix (test)") -> None:
    fig, ax = plt.subplots(figsize=(7.5, 6.5), constrained_layout=True)
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
    plt.close(fig)


def run_plots(folder: Path, rows, held, data, pred, cm) -> None:
    plot_curves(rows, held, folder / "curves.png")
    plot_misclassified(data.test_x, data.test_y, pred, data.classes, folder / "misclassified.png")
    plot_confusion(cm, data.classes, folder / "confusion.png")


def _fmt(values: list[float], digits: int = 2) -> str:
    from .study import mean_std

    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def compare_report(out: Path, results: list[dict]) -> None:
    """``report.md`` for a comparison: a table per norm, overlaid curves, each run's plots."""
    from .runs import atomic_write_text, read_jsonl

    by_norm: dict[str, list[dict]] = {}
    for r in results:
        by_norm.setdefault(r["norm"], []).append(r)
    held = "val" if any(r.get("val_size") for r in results) else "test"
    first = results[0]
    seeds = sorted({r["seed"] for r in results})
    lines = [f"# {first['arch']}: {', '.join(by_norm)} compared", "",
             f"Recipe `{first['recipe']}`, {first['epochs']} epochs, seeds {', '.join(map(str, seeds))}, "
             f"{first['precision']} on {first['device']}, torch {first['torch']}. Accuracies in percent; "
             "final epoch unless marked best" + (" (mean ± std over seeds)" if len(seeds) > 1 else "") + ".", "",
             f"| norm | params | train acc | test acc | best {held} acc (epoch) | time (s) | images/s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for norm, rs in by_norm.items():
        best = ", ".join(f"{r[f'best_{held}_acc']:.2f} ({r['best_epoch']})" for r in rs)
        lines.append(f"| {norm} | {rs[0]['params']:,} | {_fmt([r['train_acc'] for r in rs])} | "
                     f"{_fmt([r['test_acc'] for r in rs])} | {best} | {_fmt([r['seconds'] for r in rs], 0)} | "
                     f"{_fmt([r['images_per_second'] for r in rs], 0)} |")
    # Overlaid curves, one line per run.
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    panels = [("train_loss", "Training loss"), ("train_acc", "Training accuracy (%)"),
              (f"{held}_loss", f"{held.capitalize()} loss"), (f"{held}_acc", f"{held.capitalize()} accuracy (%)")]
    colors = dict(zip(by_norm, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for r in results:
        rows = read_jsonl(out / f"{r['arch']}-{r['norm']}-seed{r['seed']}" / "metrics.jsonl")
        for ax, (key, label) in zip(axes.flat, panels):
            ax.plot([x["epoch"] for x in rows], [x[key] for x in rows], color=colors[r["norm"]], alpha=0.85,
                    label=f"{r['norm']} seed {r['seed']}")
            ax.set_title(label)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    save_figure(fig, out / "curves.png", dpi=100)
    plt.close(fig)
    lines += ["", "## Training curves", "", "![curves](curves.png)", "", "## Per run", "",
              "| run | curves | misclassified | confusion |", "|---|---|---|---|"]
    for r in results:
        name = f"{r['arch']}-{r['norm']}-seed{r['seed']}"
        lines.append(f"| {name} | [curves]({name}/curves.png) | [misclassified]({name}/misclassified.png) | "
                     f"[confusion]({name}/confusion.png) |")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
