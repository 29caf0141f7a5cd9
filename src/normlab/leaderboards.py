"""The norm leaderboard: one fixed protocol for any list of norms (built in or a user's own), so that a new
norm stands beside the known ones on equal terms.

Per protocol (an architecture with its recipe), every norm trains at the recipe's batch and at a tiny
batch of 4 (learning rate scaled linearly, as in the batch-size study), for seeds 0, 1 and 2, on all the
training images, and is tested once at its final epoch. Per norm and batch the board shows the mean with
its 95% confidence interval over seeds (Student's t), the mean paired difference to BN (seed for seed)
with its interval, training throughput and parameters. ``quick`` shrinks the runs to minutes (fewer
epochs and images); such a board says so in its title, its tables and its file names, and its numbers
are for trying a norm out, not for comparing it.

Run folders are ``out/<protocol>/<arch>-<norm>-bs<batch>-seed<seed>`` (``out/quick-<protocol>/...`` for
quick runs, which are never mixed with full ones): finished ones are reused and
interrupted ones resumed, so a board grows as runs finish and a cut-short one picks up where it stopped.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from .config import TrainConfig
from .errors import NormlabError
from .recipes import HEADLINE
from .runs import atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class Protocol:
    arch: str
    recipe: str
    about: str


PROTOCOLS = {
    "s8": Protocol("s8", "reference", "the reference study's S8 with its recipe"),
    "convmixer": Protocol(*HEADLINE["bn"], "the best shipped ConvMixer (every norm fits its budget) with its recipe"),
}
TINY_BATCH = 4
SEEDS = (0, 1, 2)
QUICK = dict(epochs=2, train_size=5000)  # minutes, not hours: for trying a norm out
# Student's t quantile for a two-sided 95% interval, by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95% confidence interval (None for a single value: no interval)."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, None
    return mean, T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def plan(norms: list[str], protocols: list[str], seeds=SEEDS, quick: bool = False, out: Path = Path("runs"),
         base: TrainConfig | None = None) -> list[tuple[str, TrainConfig]]:
    """Every run of the board with its protocol, seed-major (a board cut short has every norm for its
    first seeds)."""
    from .recipes import get_recipe

    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise NormlabError(f"unknown protocol {', '.join(unknown)}; choose from {', '.join(PROTOCOLS)}")
    if "bn" not in norms:
        norms = ["bn", *norms]  # the reference every difference is taken against
    base = base or TrainConfig()
    configs = []
    for name in protocols:
        p = PROTOCOLS[name]
        folder = out / f"{'quick-' if quick else ''}{name}"
        recipe = get_recipe(p.recipe)
        for batch in (recipe.batch_size, TINY_BATCH):
            lr = recipe.lr * batch / recipe.batch_size
            for seed in seeds:
                for norm in norms:
                    configs.append((name, replace(base, arch=p.arch, recipe=p.recipe, norm=norm, seed=seed,
                                                  batch_size=batch, lr=lr, **(QUICK if quick else {}),
                                                  out=str(folder / f"{p.arch}-{norm}-bs{batch}-seed{seed}"))))
    return configs


def median_epoch_rate(folder: Path, result: dict) -> float:
    """The run's training throughput as the median over its epochs (metrics.jsonl), so that a machine busy
    with something else for part of a run does not drag the figure down; the run's mean where no epoch
    rows are left."""
    from .runs import read_jsonl

    path = Path(folder) / "metrics.jsonl"
    rates = [row["images_per_second"] for row in (read_jsonl(path) if path.is_file() else [])
             if isinstance(row.get("images_per_second"), (int, float))]
    return statistics.median(rates) if rates else result["images_per_second"]


def short_cpu(name: str | None) -> str:
    """'Intel(R) Xeon(R) Processor' -> 'Intel Xeon'; runs from before normlab recorded it: 'unrecorded'."""
    if not name:
        return "unrecorded"
    for junk in ("(R)", "(TM)", " Processor", " CPU", " @"):
        name = name.replace(junk, "")
    return " ".join(name.split()[:4])


def rows(results: list[dict], protocol_of: list[str]) -> list[dict]:
    """One row per (protocol, batch, norm): the board's table."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r, p in zip(results, protocol_of):
        groups.setdefault((p, r["batch_size"], r["norm"]), {})[r["seed"]] = r
    table = []
    for (p, batch, norm), by_seed in groups.items():
        accs = [r["test_acc"] for r in by_seed.values()]
        mean, half = interval(accs)
        bn = groups.get((p, batch, "bn"), {})
        paired = [by_seed[s]["test_acc"] - bn[s]["test_acc"] for s in by_seed if s in bn]
        diff = interval(paired) if paired and norm != "bn" else None
        first = next(iter(by_seed.values()))
        table.append({"protocol": p, "batch": batch, "norm": norm, "arch": first["arch"], "seeds": len(accs),
                      "test_acc": mean, "ci95": half, "diff_to_bn": diff[0] if diff else None,
                      "diff_ci95": diff[1] if diff else None, "params": first["params"],
                      "images_per_second": statistics.median(r.get("epoch_images_per_second", r["images_per_second"])
                                                             for r in by_seed.values()),
                      "cpu": ", ".join(sorted({short_cpu(r.get("cpu")) + (" (compiled)" if r.get("compiled") else "")
                                               for r in by_seed.values()}))})
    table.sort(key=lambda row: (row["protocol"], -row["batch"], -row["test_acc"]))
    return table


def _pm(value: float, half: float | None, sign: str = "") -> str:
    return f"{value:{sign}.2f}" + (" (1 seed)" if half is None else f" ± {half:.2f}")


def _fmt_diff(row: dict) -> str:
    return "-" if row["diff_to_bn"] is None else _pm(row["diff_to_bn"], row["diff_ci95"], "+")


def still_to_run(missing: list[dict]) -> str:
    """The runs a board lacks in one line, grouped the way the board trains them: 's8, batch 4, seed 1: bn,
    gn; s8, batch 4, seed 2: bn' (``missing``: dicts with protocol, batch, seed and norm)."""
    groups: dict[tuple, list[str]] = {}
    for m in missing:
        groups.setdefault((m["protocol"], m["batch"], m["seed"]), []).append(m["norm"])
    return "; ".join(f"{p}, batch {b}, seed {s}: {', '.join(norms)}" for (p, b, s), norms in groups.items())


def write(out: Path, table: list[dict], quick: bool, expected: int, finished: int,
          missing: list[dict] | None = None) -> None:
    """leaderboard.md, leaderboard.html and leaderboard.json (``quick-`` before each name for a quick board).
    ``missing``: the planned runs that have not finished (protocol, batch, seed, norm), listed after the
    table so a board grown a few runs at a time says what it still lacks."""
    from html import escape

    prefix = "quick-" if quick else ""
    title = "Norm leaderboard" + (" (QUICK PROFILE: 2 epochs on 5,000 images; not comparable)" if quick else "")
    intro = (f"Test accuracy (%) at the final epoch, mean ± 95% confidence interval over seeds; Δ BN is the mean "
             f"paired difference to BN, seed for seed, with its interval. Batch 4 runs scale the learning rate "
             f"linearly. images/s: training throughput of the median epoch (median over seeds), on the CPU named "
             f"beside it, '(compiled)' where the runs trained under torch.compile (`--compile auto`; throughput from "
             f"different CPUs does not compare; older runs did not record theirs). {finished} of {expected} runs "
             f"finished.")
    head = ["protocol", "batch", "norm", "seeds", "test acc", "Δ BN", "params", "images/s", "measured on"]
    cells = [[r["protocol"], str(r["batch"]), r["norm"], str(r["seeds"]), _pm(r["test_acc"], r["ci95"]),
              _fmt_diff(r), f"{r['params']:,}", f"{r['images_per_second']:,.0f}", r.get("cpu", "unrecorded")]
             for r in table]
    md = [f"# {title}", "", intro, "", "| " + " | ".join(head) + " |", "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    md += ["| " + " | ".join(c) + " |" for c in cells]
    protocols = "Protocols: " + "; ".join(f"`{k}`: {p.about} (`{p.arch}`, `{p.recipe}`)" for k, p in PROTOCOLS.items())
    todo = f"Still to run ({len(missing)}): {still_to_run(missing)}." if missing else ""
    md += ["", protocols] + (["", todo] if todo else [])
    atomic_write_text(out / f"{prefix}leaderboard.md", "\n".join(md) + "\n")
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d232a}"
            "table{border-collapse:collapse}th,td{padding:.35em .8em;border-bottom:1px solid #dde;text-align:right}"
            "th{background:#eef1f6}td:nth-child(1),td:nth-child(3){text-align:left}.quick{color:#b00}"
            f"</style></head><body><h1 class='{'quick' if quick else ''}'>{escape(title)}</h1><p>{escape(intro)}</p>"
            f"<table><tr>{''.join(f'<th>{escape(h)}</th>' for h in head)}</tr>{body}</table>"
            + "".join(f"<p>{escape(text.replace('`', ''))}</p>" for text in (protocols, todo) if text)
            + "</body></html>")
    atomic_write_text(out / f"{prefix}leaderboard.html", html)
    atomic_write_json(out / f"{prefix}leaderboard.json", {"quick": quick, "runs_expected": expected,
                                                          "runs_finished": finished, "rows": table,
                                                          "runs_missing": list(missing or [])})


def leaderboard(norms: list[str], protocols: list[str], out: Path, *, seeds=SEEDS, quick: bool = False,
                base: TrainConfig | None = None, backend: str = "local", report_only: bool = False,
                log=print) -> list[dict]:
    """Train what the board lacks (unless ``report_only``) and write it; returns its rows."""
    from .study import resolve_all, reuse_finished, run_all

    out = Path(out)
    planned = plan(list(norms), list(protocols), seeds, quick, out, base)
    specs = resolve_all([c for _, c in planned])  # every run checked (names, budget) before any trains
    protocol_of = [p for p, _ in planned]
    if report_only:
        results = reuse_finished(specs, False, log)
    elif backend == "ray":
        from .sweeps import run_on_ray

        results = run_on_ray(specs, False, None, 1, 0, log)
    else:
        results = run_all(specs, False, log)
    results = [r and {**r, "epoch_images_per_second": median_epoch_rate(spec.out, r)} for r, spec in zip(results, specs)]
    done = [(r, p) for r, p in zip(results, protocol_of) if r is not None]
    if not done:
        raise NormlabError(f"{out}: no finished runs for this board yet; drop --report-only to train them")
    table = rows([r for r, _ in done], [p for _, p in done])
    missing = [{"protocol": p, "batch": c.batch_size, "seed": c.seed, "norm": c.norm}
               for r, (p, c) in zip(results, planned) if r is None]
    write(out, table, quick, len(planned), len(done), missing)
    log(f"leaderboard: {out / (('quick-' if quick else '') + 'leaderboard.md')}")
    if missing:
        log(f"{len(done)} of {len(planned)} runs finished; still to run: {still_to_run(missing)}")
    return table
