"""Accuracy under common corruptions (:mod:`normlab.corruptions`), per model, with optional test-time
BatchNorm adaptation, and its report (robustness.md, robustness.html, robustness.json, figures).

Figures: the mean corruption accuracy (mCA) is the mean over every corruption and severity; the relative
drop of a family at a severity is ``(clean - corrupted) / clean`` with the family's mean accuracy.
``adapt_bn``: before evaluating each corrupted set, every BatchNorm layer forgets its training statistics
and re-estimates them from that set's images, in evaluation batches, without labels (Schneider et al.,
"Improving robustness against common corruptions by covariate shift adaptation", NeurIPS 2020). Norms that
compute statistics per sample (GroupNorm, LayerNorm, ...) have nothing to adapt and are reported as such.
"""
from __future__ import annotations

import copy
import statistics
from pathlib import Path

import torch
from torch import nn

from .corruptions import CORRUPTIONS, FAMILIES, SEVERITIES, check_names, check_severities, corrupt
from .errors import NormlabError
from .runs import atomic_write_json, atomic_write_text, save_figure

HEATMAP = "robustness.png"
GALLERY = "corruptions.png"
PARTIAL = ".robustness.partial.json"


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def adapt_batch_norm(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are re-estimated on ``images`` (uint8), no labels:
    each BN layer's running mean and variance become the average over the batches of ``images``."""
    from .devices import to_input

    adapted = copy.deepcopy(model).eval()
    layers = [m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
        bn.train()
    device = next(adapted.parameters()).device
    for i in range(0, len(images), batch_size):
        adapted(to_input(images[i:i + batch_size].to(device)))
    return adapted.eval()


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    from .evaluation import evaluate

    return round(evaluate(model, x, y, device, "fp32")["acc"], 2)


def _drop(clean: float, corrupted: float) -> float | None:
    """The relative drop ``(clean - corrupted) / clean`` in %; none from a clean accuracy of 0."""
    return 100 * (clean - corrupted) / clean if clean else None


def _summary(clean: float, acc: dict[str, list[float]]) -> dict:
    """mCA, the mean accuracy per family (over its corruptions and severities) and the relative drop per
    family and severity."""
    families = [f for f in FAMILIES if any(CORRUPTIONS[c].family == f for c in acc)]
    by_family = {f: [v for c, vs in acc.items() if CORRUPTIONS[c].family == f for v in vs] for f in families}
    n_sev = len(next(iter(acc.values())))
    def rel(v: float) -> float | None:
        d = _drop(clean, v)
        return None if d is None else round(d, 2)

    drop = {f: [rel(statistics.mean(acc[c][s] for c in acc if CORRUPTIONS[c].family == f)) for s in range(n_sev)]
            for f in families}
    return {"mean_corruption_acc": round(statistics.mean(v for vs in acc.values() for v in vs), 2),
            "family_acc": {f: round(statistics.mean(v), 2) for f, v in by_family.items()},
            "relative_drop": drop}


def measure(models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, *, corruptions=tuple(CORRUPTIONS),
            severities=SEVERITIES, adapt_bn: bool = False, seed: int = 0, device: str = "auto", log=print,
            partial: Path | None = None, key: dict | None = None, known: dict[str, dict] | None = None) -> dict:
    """Accuracy of each model on each corrupted copy of ``x`` (uint8 test images, labels ``y``); each
    corrupted set is generated once and shared by the models. With ``partial``, every finished set is
    saved there (with ``key``, what identifies the measurement), and a later call with the same key goes
    on from it instead of starting again. ``known``: finished entries (of an earlier measurement with the
    same settings) for some of the models; those are taken as they are, not measured."""
    from .devices import resolve_device
    from .runs import read_json

    corruptions, severities = check_names(corruptions), check_severities(severities)
    if not models:
        raise NormlabError("pass at least one model")
    known = {n: known[n] for n in models if n in (known or {})}
    dev = resolve_device(device)
    nets = {name: m.to(dev).eval() for name, m in models.items() if name not in known}
    adaptable = {name: adapt_bn and has_batch_norm(m) for name, m in nets.items()}
    key = {**(key or {}), "models": sorted(nets), "images": len(x), "seed": seed, "adapt_bn": adapt_bn,
           "corruptions": corruptions, "severities": severities}
    saved = read_json(partial) if partial is not None and partial.is_file() else None
    if nets and saved is not None and saved.get("key") == key:
        out = saved["models"]
        log(f"resuming from {partial}: {sum(len(v) for v in next(iter(out.values()))['acc'].values())} "
            "corrupted set(s) already measured")
    else:
        out = {name: {"clean_acc": _accuracy(m, x, y, dev), "acc": {}, "adapted_acc": {} if adaptable[name] else None}
               for name, m in nets.items()}
        for name, m in nets.items():
            if adaptable[name]:
                out[name]["adapted_clean_acc"] = _accuracy(adapt_batch_norm(m, x), x, y, dev)
    for c in corruptions:
        for s in severities:
            k = severities.index(s)
            if all(len(r["acc"].get(c, [])) > k for r in out.values()):
                continue  # measured before an interruption
            xc = corrupt(x, c, s, seed)
            for name, m in nets.items():
                out[name]["acc"].setdefault(c, []).append(_accuracy(m, xc, y, dev))
                if adaptable[name]:
                    out[name]["adapted_acc"].setdefault(c, []).append(_accuracy(adapt_batch_norm(m, xc), xc, y, dev))
            if partial is not None:
                atomic_write_json(partial, {"key": key, "models": out})
            log(f"{c} severity {s}: " + ", ".join(f"{n} {r['acc'][c][-1]:.2f}%"
                                                  + (f" (adapted {r['adapted_acc'][c][-1]:.2f}%)" if r["adapted_acc"] is not None else "")
                                                  for n, r in out.items()))
    for name, r in out.items():
        r.update(_summary(r["clean_acc"], r["acc"]))
        if r["adapted_acc"] is not None:
            r["adapted"] = _summary(r["adapted_clean_acc"], r["adapted_acc"])
    out = {name: known[name] if name in known else out[name] for name in models}
    return {"about": ("accuracy (%) on CIFAR-10-C style corruptions of the test set (normlab.corruptions), "
                      "one figure per corruption and severity"),
            "images": len(x), "seed": seed, "corruptions": corruptions, "severities": severities,
            "adapt_bn": adapt_bn, "models": out}


# ------------------------------------------------------------------------------------------------ report
def plot_heatmaps(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    panels = []
    for name, r in result["models"].items():
        panels.append((f"{name}\nclean {r['clean_acc']:.1f}%, mCA {r['mean_corruption_acc']:.1f}%", r["acc"]))
        if r["adapted_acc"] is not None:
            a = r["adapted"]
            panels.append((f"{name}, BN adapted\nmCA {a['mean_corruption_acc']:.1f}%", r["adapted_acc"]))
    names, sev = result["corruptions"], result["severities"]
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.2 * cols + 1.5, (0.38 * len(names) + 1.4) * rows), constrained_layout=True)
    grid_axes = fig.subplots(rows, cols, squeeze=False)
    axes = list(grid_axes.flat)
    for ax in axes[len(panels):]:
        ax.axis("off")
    for k, (ax, (title, acc)) in enumerate(zip(axes, panels)):
        grid = torch.tensor([acc[c] for c in names])
        im = ax.imshow(grid.numpy(), cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        for i in range(len(names)):
            for j in range(len(sev)):
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(sev)), [str(s) for s in sev])
        ax.set_yticks(range(len(names)), names if k % cols == 0 else [""] * len(names))
        ax.set_xlabel("severity")
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.6, label="test accuracy (%)")
    save_figure(fig, path, dpi=100)


def plot_gallery(image: torch.Tensor, names: list[str], path: Path, seed: int = 0) -> None:
    """One test image under each corruption at every severity."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 1.2 * len(names)), constrained_layout=True)
    axes = fig.subplots(len(names), 6, squeeze=False)
    for i, c in enumerate(names):
        views = [image] + [corrupt(image[None], c, s, seed)[0] for s in SEVERITIES]
        for j, v in enumerate(views):
            axes[i, j].imshow(v.permute(1, 2, 0).numpy(), interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(c, rotation=0, ha="right", va="center", fontsize=8)
    for j, label in enumerate(["clean"] + [f"severity {s}" for s in SEVERITIES]):
        axes[0, j].set_title(label, fontsize=8)
    save_figure(fig, path, dpi=100)


def _fmt(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def write_report(out: Path, result: dict, sources: dict[str, str], image: torch.Tensor | None = None) -> None:
    from html import escape

    from .reports import _CSS, _img

    out.mkdir(parents=True, exist_ok=True)
    result = {**result, "sources": sources}
    atomic_write_json(out / "robustness.json", result)
    plot_heatmaps(result, out / HEATMAP)
    if image is not None:
        plot_gallery(image, result["corruptions"], out / GALLERY, result["seed"])
    families = [f for f in FAMILIES if any(CORRUPTIONS[c].family == f for c in result["corruptions"])]
    head = ["model", "BN adaptation", "clean", "mCA", "drop (%)"] + [f"{f} acc" for f in families]
    rows = []
    for name, r in result["models"].items():
        rows.append([name, "no", _fmt(r["clean_acc"]), _fmt(r["mean_corruption_acc"]),
                     _fmt(_drop(r["clean_acc"], r["mean_corruption_acc"]), 1)]
                    + [_fmt(r["family_acc"][f]) for f in families])
        if r["adapted_acc"] is not None:
            a = r["adapted"]
            rows.append([name, "yes", _fmt(r["adapted_clean_acc"]), _fmt(a["mean_corruption_acc"]),
                         _fmt(_drop(r["adapted_clean_acc"], a["mean_corruption_acc"]), 1)]
                        + [_fmt(a["family_acc"][f]) for f in families])
        elif result["adapt_bn"]:
            rows.append([name, "nothing to adapt (no BatchNorm)"] + [""] * (len(head) - 2))
    intro = (f"Test accuracy (%) of each model on {result['images']:,} test images under "
             f"{len(result['corruptions'])} corruptions x {len(result['severities'])} severities, generated "
             f"deterministically (seed {result['seed']}) by normlab.corruptions with the CIFAR-10-C parameters of "
             "Hendrycks & Dietterich (2019). mCA: mean over every corruption and severity; drop: (clean - mCA) / "
             "clean. BN adaptation re-estimates BatchNorm statistics on each corrupted set, without labels.")
    md = ["# Robustness to common corruptions", "", intro, "", "| " + " | ".join(head) + " |",
          "|" + "---|" * 2 + "---:|" * (len(head) - 2)] + ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", "Sources: " + "; ".join(f"`{n}`: {s}" for n, s in sources.items()), "",
           f"![accuracy per corruption and severity]({HEATMAP})", ""]
    if image is not None:
        md += [f"![one test image under each corruption]({GALLERY})", ""]
    md += ["## Relative drop per family and severity", "",
           "(clean - family mean) / clean, in %; lower is better.", "",
           "| model | family | " + " | ".join(f"s{s}" for s in result["severities"]) + " |",
           "|---|---|" + "---:|" * len(result["severities"])]
    for name, r in result["models"].items():
        for label, summary in [("", r)] + ([(", BN adapted", r["adapted"])] if r["adapted_acc"] else []):
            md += [f"| {name}{label} | {f} | " + " | ".join(_fmt(v, 1) for v in summary["relative_drop"][f]) + " |"
                   for f in families]
    md += [""]
    sev_head = "| corruption | family | " + " | ".join(f"s{s}" for s in result["severities"]) + " |"
    for name, r in result["models"].items():
        for label, acc in [("", r["acc"])] + ([(", BN adapted", r["adapted_acc"])] if r["adapted_acc"] else []):
            md += [f"## {name}{label}", "", sev_head, "|---|---|" + "---:|" * len(result["severities"])]
            md += [f"| {c} | {CORRUPTIONS[c].family} | " + " | ".join(_fmt(v) for v in acc[c]) + " |" for c in acc]
            md += [""]
    atomic_write_text(out / "robustness.md", "\n".join(md))
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    figures = _img(out / HEATMAP, "accuracy per corruption and severity")
    if image is not None:
        figures += "<h2>The corruptions</h2>" + _img(out / GALLERY, "one test image under each corruption")
    html = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Robustness</title>"
            f"<style>{_CSS}</style></head><body><h1>Robustness to common corruptions</h1><p>{escape(intro)}</p>"
            f"<table><thead><tr>{''.join(f'<th>{escape(h)}</th>' for h in head)}</tr></thead><tbody>{body}"
            f"</tbody></table><h2>Accuracy per corruption and severity</h2>{figures}</body></html>\n")
    atomic_write_text(out / "robustness.html", html)


def rewrite(out: Path, data_dir=None, log=print) -> dict:
    """Redraw the report in ``out`` (md, html, heat map, gallery) from its robustness.json, computing
    nothing; the gallery needs CIFAR-10 and is left out without it."""
    from .data import load_cifar10
    from .runs import read_json

    path = Path(out) / "robustness.json"
    if not path.is_file():
        raise NormlabError(f"{out}: no robustness.json here; run normlab robustness without --report-only first")
    result = read_json(path)
    sources = result.pop("sources", {})
    try:
        image = load_cifar10(data_dir, download_missing=False).test_x[1]
    except NormlabError:
        image = None
    write_report(Path(out), result, sources, image=image)
    log(f"robustness report: {Path(out) / 'robustness.md'}")
    return result


def _reusable(old: dict, settings: dict, sources: dict[str, str], out: Path) -> dict[str, dict]:
    """The entries of an earlier report (``old``, its robustness.json) that stand for the same models under
    the same settings: same name and same source (which names the weights' sha256)."""
    differ = sorted(k for k, v in settings.items() if old.get(k) != v)
    if differ:
        raise NormlabError(f"{out} holds a report measured with other settings ({', '.join(differ)}); pass "
                           "--overwrite to measure every model again, or another --out")
    return {n: old["models"][n] for n, s in sources.items()
            if n in old.get("models", {}) and old.get("sources", {}).get(n) == s}


def run(models: dict[str, nn.Module], sources: dict[str, str], out: Path, *, corruptions=tuple(CORRUPTIONS),
        severities=SEVERITIES, adapt_bn: bool = False, limit: int | None = None, seed: int = 0, data_dir=None,
        device: str = "auto", overwrite: bool = False, update: bool = False, log=print) -> dict:
    """Measure ``models`` on the corrupted test set (its first ``limit`` images) and write the report into
    ``out``; a finished report there is kept unless ``overwrite``. ``update``: replace that report with one of
    ``models``, measuring only those it does not hold already (same name, same weights, same settings)."""
    from .config import MAX_SEED, check_int
    from .data import load_cifar10
    from .runs import read_json

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NormlabError(f"{out}: a file of that name is in the way; pass another --out")
    if overwrite and update:
        raise NormlabError("pass either --overwrite (measure every model again) or --update (only new or "
                           "changed models), not both")
    if (out / "robustness.json").exists() and not (overwrite or update):
        raise NormlabError(f"{out} already holds a robustness report; pass --update to add or replace models "
                           "in it, --overwrite to measure everything again, or another --out")
    if limit is not None:
        check_int(limit, "--limit", 1)
    check_int(seed, "--seed", 0, MAX_SEED)
    corruptions, severities = check_names(corruptions), check_severities(severities)
    data = load_cifar10(data_dir)
    x, y = data.test_x[:limit], data.test_y[:limit]
    known = {}
    if update and (out / "robustness.json").is_file():
        settings = {"images": len(x), "seed": seed, "adapt_bn": adapt_bn, "corruptions": corruptions,
                    "severities": severities}
        known = _reusable(read_json(out / "robustness.json"), settings, sources, out)
        if known:
            log(f"reusing the figures of {', '.join(known)} from {out / 'robustness.json'} (same weights and settings)")
    out.mkdir(parents=True, exist_ok=True)
    partial = out / PARTIAL  # an interrupted measurement goes on from here when run again
    result = measure(models, x, y, corruptions=corruptions, severities=severities, adapt_bn=adapt_bn, seed=seed,
                     device=device, log=log, partial=partial, key={"sources": sources}, known=known)
    write_report(out, result, sources, image=x[1] if len(x) > 1 else x[0])
    partial.unlink(missing_ok=True)
    log(f"robustness report: {out / 'robustness.md'}")
    return result
