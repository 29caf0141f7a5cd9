"""Studies: several runs that differ in one thing, trained one after another into one folder, then
summarized in a report. Finished runs are reused; an interrupted one is resumed."""
from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

from .engine import TrainConfig, train
from .errors import NormlabError
from .metrics import held_out
from .norms import USER_NORMS
from .runs import RunDir


def parse_list(text: str, what: str, allowed=None, cast=str) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise NormlabError(f"--{what} is empty; give a comma-separated list")
    try:
        items = [cast(t) for t in items]
    except ValueError:
        raise NormlabError(f"--{what}: {text!r} is not a comma-separated list of {cast.__name__}s") from None
    if allowed is not None:
        bad = [t for t in items if t not in allowed]
        if bad:
            raise NormlabError(f"--{what}: unknown {', '.join(map(str, bad))}; choose from {', '.join(allowed)}")
    return items


def check_norms(norms: list[str]) -> None:
    bad = [n for n in norms if n not in USER_NORMS]
    if bad:
        raise NormlabError(f"unknown norm {', '.join(bad)}; choose from {', '.join(USER_NORMS)}")


def reuse_finished(configs: list[TrainConfig], overwrite: bool, log=print) -> list[dict | None]:
    """Each config's results where its ``out`` folder holds a finished run (unless ``overwrite``), else
    None; says which runs are reused."""
    runs = [RunDir(cfg.out) for cfg in configs]
    results = [run.results() if run.finished and not overwrite else None for run in runs]
    reused = [run.path.name for run, r in zip(runs, results) if r is not None]
    if reused:
        log(f"reused {len(reused)} finished run(s): {', '.join(reused)}")
    return results


def run_all(configs: list[TrainConfig], overwrite: bool, log=print) -> list[dict]:
    """Train each config into its ``out`` folder in turn: finished runs are reused (unless ``overwrite``),
    interrupted ones resumed. Returns every run's results, in order."""
    return [r if r is not None else train(replace(cfg, resume=True), log=log)
            for cfg, r in zip(configs, reuse_finished(configs, overwrite, log))]


def compare(base: TrainConfig, norms: list[str], seeds: list[int], out: Path, log=print,
            report_only: bool = False) -> list[dict]:
    """Train every (norm, seed) pair into ``out/<arch>-<norm>-seed<seed>`` and write ``out/report.md``
    and ``out/report.html``. ``report_only``: train nothing; report the pairs whose runs are finished."""
    check_norms(norms)
    configs = [replace(base, norm=norm, seed=seed, out=str(out / f"{base.arch}-{norm}-seed{seed}"))
               for seed in seeds  # seed-major: a study cut short still has every norm for its first seeds
               for norm in norms]
    if report_only:
        pairs = [(cfg, r) for cfg, r in zip(configs, reuse_finished(configs, False, log)) if r is not None]
        if not pairs:
            raise NormlabError(f"{out}: no finished runs of these norms and seeds to report; train them first "
                               "(drop --report-only)")
    else:
        pairs = list(zip(configs, run_all(configs, base.overwrite, log)))
    from .report import compare_report
    # The report names what --set changed from the preset (e.g. "fast-b128 optimizer=muon muon_lr=0.1").
    compare_report(out, [{**r, "recipe": _recipe_label(RunDir(cfg.out), r.get("recipe"))} for cfg, r in pairs])
    log(f"report: {out / 'report.md'}")
    return [r for _, r in pairs]


def report_runs(folders: list[Path], out: Path, title: str | None = None) -> list[dict]:
    """Write ``out/report.md`` and ``out/report.html`` comparing finished runs from any folders (other
    architectures, recipes, learning rates or precisions: what differs becomes a table column)."""
    if not folders:
        raise NormlabError("name at least one run folder to report")
    results = []
    for folder in folders:
        run = RunDir(folder)
        if not run.path.is_dir():
            raise NormlabError(f"{folder}: no such run folder; check the path")
        if not run.finished:
            raise NormlabError(f"{folder}: not a finished run (no results.json); finish it with `normlab train "
                               "... --resume`, or leave it out")
        r = run.results()
        results.append({**r, "recipe": _recipe_label(run, r.get("recipe"))})
    if len({Path(f).resolve() for f in folders}) < len(folders):
        raise NormlabError("a run folder is named twice; name each once")
    if len({held_out(r) for r in results}) > 1:
        raise NormlabError("some of these runs held out a validation split and others did not; their "
                           "per-epoch figures differ, so report them separately")
    out.mkdir(parents=True, exist_ok=True)
    from .report import compare_report
    compare_report(out, results, title=title, folders=folders)
    return results


def _recipe_label(run: RunDir, name: str | None) -> str | None:
    """The recipe's name plus each field the run changed from that preset (``--set``, ``--batch-size``), so
    runs that differ only there get their own report rows: e.g. "fast-b128-ema label_smoothing=0.0". The
    peak lr and epochs have columns of their own."""
    from .recipes import changes_from_preset
    from .runs import CONFIG, read_json

    if not (run / CONFIG).is_file():
        return name
    changes = changes_from_preset(name, read_json(run / CONFIG).get("recipe", {}))  # [] for unknown presets
    return " ".join([name, *changes]) if changes else name


def mean_std(values: list[float]) -> tuple[float, float]:
    if len(values) == 1:
        return values[0], 0.0
    return statistics.mean(values), statistics.stdev(values)


# Linear scaling rule (Goyal et al., 2017): the learning rate grows in proportion to the batch size,
# anchored at the reference's 0.01 for batch 128.
BASE_BATCH = 128


def scaled_lr(base_lr: float, batch_size: int) -> float:
    return base_lr * batch_size / BASE_BATCH


def batch_size_study(base: TrainConfig, norms: list[str], batch_sizes: list[int], out: Path, log=print) -> list[dict]:
    """Train every (batch size, norm) pair with the learning rate scaled linearly with the batch size,
    into ``out/s8-<norm>-bs<B>``; write ``out/report.md``, ``out/report.html`` and ``out/batch_size.png``."""
    check_norms(norms)
    bad = [b for b in batch_sizes if b < 1]
    if bad:
        raise NormlabError(f"--batch-sizes must be positive, got {bad}")
    base_lr = base.get_recipe().lr
    configs = [replace(base, norm=norm, batch_size=bs, lr=scaled_lr(base_lr, bs),
                       out=str(out / f"{base.arch}-{norm}-bs{bs}"))
               for bs in sorted(batch_sizes, reverse=True)  # large batches first: they are the fast ones
               for norm in norms]
    results = run_all(configs, base.overwrite, log)
    from .report import batch_size_report
    batch_size_report(out, results, base_lr)
    log(f"report: {out / 'report.md'}")
    return results
