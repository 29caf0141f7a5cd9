"""Architecture selection on the validation split: short proxy runs of candidate nets, and their table.

    python scripts/arch_selection.py train CANDIDATE [--norm bn] [--epochs 8] [--set KEY=VALUE ...]
    python scripts/arch_selection.py table [FOLDER]   # writes FOLDER/README.md from the run folders

Every run holds out the same 5,000 training images (``--val-size 5000``) and is judged on them only; the
test figure its results.json also carries is never used to choose. Candidates that are not registered
architectures are registered here for the run, so a run folder's ``arch`` names a candidate below.
Runs are resumable and a finished one is never overwritten (normlab's run folders).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from normlab import engine, models
from normlab.models.convmixer import ConvMixer, convmixer_s16
from normlab.models.resnet import ResNet
from normlab.recipes import parse_settings
from normlab.runs import atomic_write_text

FOLDER = Path("results/arch-selection/proxy-8ep")
CANDIDATES = {  # name -> (what it is, builder of a norm name)
    "s8": ("the reference S8", None),
    "resnet8": ("residual, full 3x3 convs, pools to 16x16 then 8x8 (docs/architectures.md)", None),
    "sep64w112": ("residual, depthwise-separable: stem 64 (+block) at 32x32, sep 64->112 + pool, block at 16x16",
                  lambda n: ResNet(n, stem=64, stem_blocks=1, widths=(112,), blocks=(1,), block="sep")),
    "full24w40": ("residual, full convs, wide at full resolution: stem 24 (+block) at 32x32, 24->40 + pool, block",
                  lambda n: ResNet(n, stem=24, stem_blocks=1, widths=(40,), blocks=(1,))),
    "mix64d8k5p2": ("ConvMixer-style, width 64, 8 blocks, depthwise 5x5, 2x2 patches",
                    lambda n: ConvMixer(n, width=64, depth=8, kernel=5, patch=2)),
    "mix64d9k3p2": ("ConvMixer-style, width 64, 9 blocks, depthwise 3x3, 2x2 patches: registered as `convmixer`",
                    lambda n: ConvMixer(n, width=64, depth=9, kernel=3, patch=2)),
    "mix64d9k3p2s16": ("`convmixer` with a full-resolution stem: 3x3 conv 3->16 at 32x32 before the 2x2 patches",
                       convmixer_s16),
    "convmixer-ws": ("`convmixer` with weight-standardized embedding and pointwise convs", None),
}


def train(name: str, norm: str, epochs: int, settings: list[str], data_dir: str | None,
          precision: str = "auto") -> None:
    what, builder = CANDIDATES[name]
    if builder is not None:
        models.ARCHS[name] = builder
    over = parse_settings(settings)
    suffix = "".join(f"-{k.replace('_', '')}{v}" for k, v in over.items())
    suffix += "" if precision == "auto" else f"-{precision}"
    cfg = engine.TrainConfig(arch=name, norm=norm, recipe="fast", seed=0, val_size=5000, epochs=epochs,
                             precision=precision,
                             recipe_overrides=over, data_dir=data_dir, progress=False, resume=True,
                             out=str(FOLDER.parent / f"proxy-{epochs}ep" / f"{name}-{norm}{suffix}"))
    r = engine.train(cfg)
    print(f"{name}/{norm}: final val {r['val_acc']:.2f}% in {r['seconds']:.0f} s")


def table(folder: Path) -> str:
    lines = ["# Architecture selection: short runs on the validation split", "",
             "Written by `scripts/arch_selection.py table` from the run folders below. Every run: recipe `fast` "
             "(overrides in the name), seed 0, 45,000 training images, judged on 5,000 held-out training images "
             "(the test set is never used to choose). Runs stopped early (no results.json) were stopped by hand "
             "once they were clearly behind and slower; their epochs so far are shown.", "",
             "| run | what | params | epochs run | val acc per epoch | final val | images/s |",
             "|---|---|---:|---:|---|---:|---:|"]
    for run in sorted(p for p in folder.iterdir() if (p / "metrics.jsonl").is_file()):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        cfg = json.loads((run / "config.json").read_text())
        res = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else None
        arch = cfg["arch"]
        builder = CANDIDATES.get(arch, ("", None))[1]
        params = models.count_params(builder(cfg["norm"]) if builder else models.build_model(arch, cfg["norm"]))
        epochs = f"{len(rows)}/{cfg['recipe']['epochs']}"
        final = f"**{res['val_acc']:.2f}**" if res else "(stopped)"
        speed = sum(r["images_per_second"] for r in rows) / len(rows)
        curve = " ".join(f"{r['val_acc']:.1f}" for r in rows)
        lines.append(f"| {run.name} | {CANDIDATES.get(arch, ('',))[0]} | {params:,} | {epochs} | "
                     f"{curve} | {final} | {speed:,.0f} |")
    lines += ["", "images/s: training, bf16, this 2-core CPU, averaged over the epochs run (other work on the "
              "machine at times slowed a run; compare speeds in docs/benchmarks.md instead)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("candidate", choices=list(CANDIDATES))
    t.add_argument("--norm", default="bn")
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--data-dir")
    t.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    s = sub.add_parser("table")
    s.add_argument("folder", nargs="?", default=str(FOLDER))
    a = p.parse_args(argv)
    if a.cmd == "train":
        train(a.candidate, a.norm, a.epochs, a.set, a.data_dir, a.precision)
    else:
        folder = Path(a.folder)
        atomic_write_text(folder / "README.md", table(folder))
        print(f"wrote {folder / 'README.md'}")


if __name__ == "__main__":
    sys.exit(main())
