"""Sweeps: every combination of a grid of settings (norms x seeds x batch sizes x ...), one run folder
each, trained one after another in this process (``local``) or as Ray tasks on this machine or a cluster
(``ray``). Either way a run folder is exactly what ``normlab train`` writes, finished runs are reused,
interrupted ones resumed, and ``report.md`` sums the sweep up.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import replace
from pathlib import Path

from .config import RunSpec, TrainConfig
from .engine import train
from .errors import NormlabError
from .metrics import headline, held_out, mean_std
from .runs import atomic_write_json, atomic_write_text
from .study import parse_list, resolve_all, reuse_finished, run_all

# grid key -> (TrainConfig field, type of its values)
GRID_KEYS = {"archs": ("arch", str), "norms": ("norm", str), "recipes": ("recipe", str),
             "batch-sizes": ("batch_size", int), "lrs": ("lr", float), "seeds": ("seed", int)}
BACKENDS = ("local", "ray")
RAY_MISSING = "the ray backend needs Ray: pip install 'normlab[ray]'"


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["norms=bn,gn", "seeds=0,1"]`` -> ``{"norm": ["bn", "gn"], "seed": [0, 1]}``."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().replace("_", "-")
        if not sep or key not in GRID_KEYS:
            raise NormlabError(f"--grid {item!r}: expected KEY=V1,V2,... with KEY one of {', '.join(GRID_KEYS)}")
        name, cast = GRID_KEYS[key]
        if name in grid:
            raise NormlabError(f"--grid: {key} is given twice")
        grid[name] = parse_list(values, f"grid {key}", cast=cast)
    return grid


def run_name(cfg: TrainConfig) -> str:
    """The run folder's name: every setting a sweep can vary, so one config has one folder."""
    recipe = cfg.get_recipe()
    return f"{cfg.arch}-{cfg.norm}-{cfg.recipe}-bs{recipe.batch_size}-lr{recipe.lr:g}-seed{cfg.seed}"


def expand(base: TrainConfig, grid: dict[str, list], out: Path) -> list[RunSpec]:
    """One run per combination of the grid (the last key varies fastest), each with its folder in ``out``,
    every one resolved and checked (names, values, budget) before any of them trains."""
    keys = list(grid)
    configs = [replace(base, **dict(zip(keys, values))) for values in itertools.product(*(grid[k] for k in keys))]
    names = [run_name(cfg) for cfg in configs]
    if len(set(names)) < len(names):
        raise NormlabError("--grid has repeated values: two runs would share a folder")
    return resolve_all([replace(cfg, out=str(out / name)) for cfg, name in zip(configs, names)])


def sweep(base: TrainConfig, grid: dict[str, list], out: str | os.PathLike, *, backend: str = "local",
          address: str | None = None, cpus_per_task: float = 1, gpus_per_task: float = 0, log=print) -> list[dict]:
    """Train every configuration of ``grid`` (over ``base``) into ``out/<run name>/`` and write
    ``out/report.md`` and ``out/sweep.json``; return every run's results, in grid order."""
    if backend not in BACKENDS:
        raise NormlabError(f"unknown backend {backend!r}; choose {' or '.join(BACKENDS)}")
    if address and backend != "ray":
        raise NormlabError("--address is the Ray cluster's; use it with --backend ray")
    if cpus_per_task <= 0 or gpus_per_task < 0:
        raise NormlabError("--cpus-per-task must be positive and --gpus-per-task not negative")
    # Absolute paths: Ray workers do not run in this directory.
    out = Path(out).resolve()
    if base.data_dir:
        base = replace(base, data_dir=str(Path(base.data_dir).resolve()))
    specs = expand(base, grid, out)
    log(f"sweep: {len(specs)} runs into {out} ({backend} backend)")
    if backend == "local":
        results = run_all(specs, base.overwrite, log)
    else:
        results = run_on_ray(specs, base.overwrite, address, cpus_per_task, gpus_per_task, log)
    sweep_report(out, grid, specs, results)
    log(f"report: {out / 'report.md'}")
    return results


# --- Ray ---------------------------------------------------------------------------------------------
def import_ray():
    try:
        import ray
    except ImportError:
        raise NormlabError(RAY_MISSING) from None
    return ray


def _train_task(spec: RunSpec) -> dict:
    """A Ray task: one run, on the CPUs (and GPU) Ray gave it."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    name = spec.out.name
    spec = replace(spec, config=replace(spec.config, resume=True, progress=False))
    return train(spec, log=lambda msg: print(f"[{name}] {msg}", flush=True))


def run_on_ray(configs: list[RunSpec], overwrite: bool, address: str | None, cpus_per_task: float,
               gpus_per_task: float, log=print) -> list[dict]:
    """``run_all`` on Ray: each unfinished run is a task with its own CPUs/GPUs; finished runs are reused.
    Connects to the cluster at ``address`` (local Ray if None, or the one this process already joined)."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        # The workers must find the data as this process does.
        env = {k: os.environ[k] for k in ("NORMLAB_DATA", "NORMLAB_OFFLINE") if k in os.environ}
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=True,
                     runtime_env={"env_vars": env} if env else None)
        except (ConnectionError, RuntimeError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise NormlabError(f"could not start or join {where} ({str(exc).strip().splitlines()[0]}); see "
                               "docs/scale-out.md (is `ray start --head` running there? is RAY_AUTH_MODE=token "
                               "set, with the cluster's token?)") from None
    try:
        task = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)(_train_task)
        results = reuse_finished(configs, overwrite, log)
        pending = {task.remote(cfg): i for i, (cfg, r) in enumerate(zip(configs, results)) if r is None}
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(done)
            try:
                results[i] = ray.get(done)
            except ray.exceptions.RayError as exc:
                for ref in pending:  # a cluster outlives this process: stop the other runs too
                    ray.cancel(ref)
                name = configs[i].out.name
                if isinstance(exc, ray.exceptions.RayTaskError):  # the run raised
                    cause = exc.cause if isinstance(exc.cause, NormlabError) else exc
                    raise NormlabError(f"{name}: {str(cause).strip().splitlines()[-1]}") from None
                # The process itself died: killed, out of memory, or stopped (SIGSTOP) past Ray's keepalive.
                raise NormlabError(f"{name}: its Ray worker died ({type(exc).__name__}: killed, out of memory, or "
                                   "paused too long); every finished epoch is in its run folder: run the same "
                                   "command again to resume") from None
            r = results[i]
            log(f"finished {configs[i].out.name}: {headline(r)} in {r['seconds']:.0f} s "
                f"({len(configs) - len(pending)}/{len(configs)})")
        return results
    finally:
        if started:
            ray.shutdown()


# --- report ------------------------------------------------------------------------------------------
def sweep_report(out: Path, grid: dict[str, list], configs: list[RunSpec], results: list[dict]) -> None:
    """``report.md``: one row per run, then the mean ± std over seeds of each other combination;
    ``sweep.json``: the grid and every run's results."""
    held = held_out(results[0])  # every run of a sweep shares --val-size
    names = [c.out.name for c in configs]
    keys = ["arch", "norm", "recipe", "batch_size", "lr", "seed"]
    md = [f"# Sweep: {len(results)} runs", "",
          "Grid: " + ", ".join(f"{k} = {', '.join(map(str, v))}" for k, v in grid.items()) + ". Accuracies in "
          f"percent at the final epoch; best {held} accuracy (epoch) beside them.", "",
          "| run | " + " | ".join(keys) + f" | train acc | {held} acc | best {held} acc | time (s) |",
          "|---|---|---|---|" + "---:|" * (len(keys) + 1)]  # text columns left, numbers right
    for name, r in zip(names, results):
        md.append(f"| [{name}]({name}/) | " + " | ".join(str(r[k]) for k in keys) + f" | {r['train_acc']:.2f} | "
                  f"{r[f'{held}_acc']:.2f} | {r[f'best_{held}_acc']:.2f} ({r['best_epoch']}) | {r['seconds']:.0f} |")
    groups: dict[tuple, list[float]] = {}
    for r in results:
        groups.setdefault(tuple(r[k] for k in keys[:-1]), []).append(r[f"{held}_acc"])
    if any(len(v) > 1 for v in groups.values()):
        md += ["", "## Over seeds", "", "| " + " | ".join(keys[:-1]) + f" | seeds | {held} acc (mean ± std) |",
               "|---|---|---|" + "---:|" * (len(keys) - 2)]
        for group, accs in groups.items():
            m, sd = mean_std(accs)
            md.append("| " + " | ".join(map(str, group)) + f" | {len(accs)} | {m:.2f} ± {sd:.2f} |")
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    atomic_write_json(out / "sweep.json", {"grid": grid, "runs": dict(zip(names, results))})
