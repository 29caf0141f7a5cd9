"""The speedrun recipe against the headline recipe of the same norm: training compute and wall time on this
machine, one after the other.

For each norm, ``normlab train`` runs the speedrun on all 50,000 images into ``--out`` (the run folder
the results table uses), then, straight after it, the norm's headline configuration (its shipped
architecture and recipe, default flags) for ``--headline-epochs`` epochs into a temporary folder. Every
epoch of a recipe costs the same (the schedule changes the learning rate, not the work), so the headline's
20-epoch wall time is projected from its measured epochs: ``seconds x 20 / headline-epochs``. Compute is
what normlab records in results.json (forward multiply-adds x images seen), the headline's for 20 epochs.

    NORMLAB_DATA=... python benchmarks/speedrun.py --norms bn,gn,ln --out results/speedrun [--json FILE] [--arch ARCH]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from normlab.recipes import HEADLINE, SPEEDRUN_RUNS, get_recipe

from _timing import write_record


def train(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "normlab", "train", "--no-progress", *args]
    print("$ normlab train " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, text=True)
    if proc.returncode:
        sys.exit(f"normlab train failed (exit {proc.returncode})")
    return json.loads((Path(args[args.index("--out") + 1]) / "results.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--norms", default="bn,gn,ln")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/speedrun", help="folder for the speedrun runs")
    p.add_argument("--headline-epochs", type=int, default=2, help="headline epochs measured (of its 20)")
    p.add_argument("--json", help="also write the figures and the CPU to this JSON file")
    p.add_argument("--arch", help="train the speedrun on this architecture instead of the norm's in SPEEDRUN_RUNS "
                                  "(a candidate before it becomes the preset's)")
    a = p.parse_args()
    rows = []
    for norm in a.norms.split(","):
        arch, recipe = SPEEDRUN_RUNS[norm]
        arch = a.arch or arch
        folder = Path(a.out) / f"{arch}-{norm}-seed{a.seed}"
        if (folder / "results.json").is_file():
            sys.exit(f"{folder} is already finished; a side-by-side timing needs a fresh run (move it away)")
        fast = train(["--arch", arch, "--norm", norm, "--recipe", recipe, "--seed", str(a.seed),
                      "--out", str(folder)])
        head_arch, head_recipe = HEADLINE[norm]
        with tempfile.TemporaryDirectory() as tmp:
            slow = train(["--arch", head_arch, "--norm", norm, "--recipe", head_recipe, "--seed",
                          str(a.seed), "--epochs", str(a.headline_epochs), "--out", str(Path(tmp) / "headline")])
        scale = get_recipe(head_recipe).epochs / a.headline_epochs  # its full run against the part measured
        headline_seconds = slow["seconds"] * scale
        headline_macs = round(slow["train_macs"] * scale)
        rows.append({
            "norm": norm, "speedrun_arch": arch, "speedrun_recipe": recipe, "speedrun_test_acc": fast["test_acc"],
            "speedrun_macs": fast["train_macs"], "speedrun_seconds": fast["seconds"],
            "speedrun_precision": fast["precision"], "headline_arch": head_arch,
            "headline_recipe": head_recipe, "headline_precision": slow["precision"],
            "headline_macs": headline_macs, "headline_epochs_measured": a.headline_epochs,
            "headline_seconds_measured": slow["seconds"], "headline_seconds_projected": round(headline_seconds, 1),
            "compute_ratio": round(fast["train_macs"] / headline_macs, 4),
            "wall_ratio": round(fast["seconds"] / headline_seconds, 4)})
    print("\n| norm | speedrun: arch, compute (T), wall (s), test % | headline: arch, compute (T), wall (s, "
          "projected) | compute | wall |\n|---|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['norm']} | {r['speedrun_arch']}, {r['speedrun_macs'] / 1e12:.2f}, {r['speedrun_seconds']:.0f}, "
              f"{r['speedrun_test_acc']:.2f} | {r['headline_arch']}, {r['headline_macs'] / 1e12:.2f}, "
              f"{r['headline_seconds_projected']:.0f} | 1/{1 / r['compute_ratio']:.1f} | 1/{1 / r['wall_ratio']:.1f} |")
    if a.json:
        write_record(a.json, {"seed": a.seed, "headline_epochs_measured": a.headline_epochs, "rows": rows})


if __name__ == "__main__":
    main()
