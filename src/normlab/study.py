"""Studies: several runs that differ in one thing, trained one after another into one folder, then
summarized in a report. Finished runs are reused; an interrupted one is resumed."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .config import RunSpec, TrainConfig, resolve
from .engine import train
from .errors import NormlabError
from .metrics import held_out
from .runs import RunDir


def parse_list(text: str, what: str, cast=str) -> list:
    """``"bn,gn"`` -> ``["bn", "gn"]`` (``cast`` applied to each), or a one-line error. The values are
    checked where they are used (resolving each run)."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise NormlabError(f"--{what} is empty; give a comma-separated list")
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise NormlabError(f"--{what}: {text!r} is not a comma-separated list of {cast.__name__}s") from None


def reuse_finished(specs: list[RunSpec], overwrite: bool, log=print) -> list[dict | None]:
    """Each run's results where its folder holds a finished run (unless ``overwrite``), else None; says
    which runs are reused."""
    runs = [RunDir(spec.out) for spec in specs]
    results = [run.results() if run.finished and not overwrite else None for run in runs]
    reused = [run.path.name for run, r in zip(runs, results) if r is not None]
    if reused:
        log(f"reused {len(reused)} finished run(s): {', '.join(reused)}")
    return results


def resolve_all(configs: list[TrainConfig]) -> list[RunSpec]:
    """Every config resolved and checked (names, values, budget) before any of them trains."""
    specs = [resolve(cfg) for cfg in configs]
    outs = [spec.out.resolve() for spec in specs]
    if len(set(outs)) < len(outs):
        raise NormlabError("two runs would share a folder; give each setting once")
    return specs


def run_all(specs: list[RunSpec], overwrite: bool, log=print) -> list[dict]:
    """Train each run into its folder in turn: finished runs are reused (unless ``overwrite``),
    interrupted ones resumed. Returns every run's results, in order."""
    return [r if r is not None else train(replace(spec, config=replace(spec.config, resume=True)), log=log)
            for spec, r in zip(specs, reuse_finished(specs, overwrite, log))]


def labelled(results: dict) -> dict:
    """A run's results with its recipe label (stored when it ran) as its recipe, for report tables."""
    return {**results, "recipe": results.get("recipe_label") or results.get("recipe")}


def compare(base: TrainConfig, norms: list[str], seeds: list[int], out: Path, log=print,
            report_only: bool = False) -> list[dict]:
    """Train every (norm, seed) pair into ``out/<arch>-<norm>-seed<seed>`` and write ``out/report.md``
    and ``out/report.html``. ``report_only``: train nothing; report the pairs whose runs are finished."""
    out = Path(out)
    specs = resolve_all([replace(base, norm=norm, seed=seed, out=str(out / f"{base.arch}-{norm}-seed{seed}"))
                         for seed in seeds  # seed-major: a study cut short has every norm for its first seeds
                         for norm in norms])
    if report_only:
        pairs = [(spec, r) for spec, r in zip(specs, reuse_finished(specs, False, log)) if r is not None]
        if not pairs:
            raise NormlabError(f"{out}: no finished runs of these norms and seeds to report; train them first "
                               "(drop --report-only)")
    else:
        pairs = list(zip(specs, run_all(specs, base.overwrite, log)))
    from .reports import compare_report
    compare_report(out, [labelled(r) for _, r in pairs], folders=[spec.out for spec, _ in pairs],
                   data_dir=base.data_dir)
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
        results.append(labelled(run.results()))
    if len({Path(f).resolve() for f in folders}) < len(folders):
        raise NormlabError("a run folder is named twice; name each once")
    if len({held_out(r) for r in results}) > 1:
        raise NormlabError("some of these runs held out a validation split and others did not; their "
                           "per-epoch figures differ, so report them separately")
    out.mkdir(parents=True, exist_ok=True)
    from .reports import compare_report
    compare_report(out, results, title=title, folders=folders)
    return results


# Linear scaling rule (Goyal et al., 2017): the learning rate grows in proportion to the batch size,
# anchored at the reference's 0.01 for batch 128.
BASE_BATCH = 128


def scaled_lr(base_lr: float, batch_size: int) -> float:
    return base_lr * batch_size / BASE_BATCH


def batch_size_study(base: TrainConfig, norms: list[str], batch_sizes: list[int], out: Path, log=print) -> list[dict]:
    """Train every (batch size, norm) pair with the learning rate scaled linearly with the batch size,
    into ``out/<arch>-<norm>-bs<B>``; write ``out/report.md``, ``out/report.html`` and ``out/batch_size.png``."""
    out = Path(out)
    bad = [b for b in batch_sizes if isinstance(b, bool) or not isinstance(b, int) or b < 1]
    if bad:
        raise NormlabError(f"--batch-sizes must be positive whole numbers, got {bad}")
    base_lr = base.get_recipe().lr
    specs = resolve_all([replace(base, norm=norm, batch_size=bs, lr=scaled_lr(base_lr, bs),
                                 out=str(out / f"{base.arch}-{norm}-bs{bs}"))
                         for bs in sorted(batch_sizes, reverse=True)  # large batches first: the fast ones
                         for norm in norms])
    results = run_all(specs, base.overwrite, log)
    from .reports import batch_size_report
    batch_size_report(out, results, base_lr, data_dir=base.data_dir)
    log(f"report: {out / 'report.md'}")
    return results
