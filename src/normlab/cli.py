"""Command-line interface: argument parsing and printing only; every command calls :mod:`normlab.api`.

Importing this module imports no torch, so ``normlab --help`` and ``normlab recipes`` answer at once;
each command imports what it needs when it runs. Every error a user can cause ends as one line on stderr
and exit status 2 (:func:`main` is the one boundary where that happens).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .version import __version__
from .errors import NormlabError
from .names import ARCH_NAMES, COMPILE_MODES, NORMS, USER_NORMS
from .recipes import RECIPES, all_recipes, describe, get_recipe, parse_settings

ENVIRONMENT = ("environment: NORMLAB_DATA (CIFAR-10 folder), NORMLAB_OFFLINE=1 (never download), "
               "NORMLAB_COMPILE=on|off (what --compile auto does), "
               "NORMLAB_MALLOC=system (leave glibc's malloc as it is; by default normlab keeps freed memory "
               "for reuse, which spares CPU runs page faults on large tensors)")


def _add_train_options(p: argparse.ArgumentParser, single: bool, out_default: str = "") -> None:
    p.add_argument("--arch", default="s8", help=f"architecture: {', '.join(ARCH_NAMES)} (default: s8)")
    if single:
        p.add_argument("--norm", default="bn", help=f"normalization: {', '.join(NORMS)}, or your own as "
                            "package.module:factory (default: bn)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--recipe", default="reference", help=f"training recipe: {', '.join(RECIPES)} (default: reference)")
    p.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, help="override the recipe's (peak) learning rate")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="recipe_set",
                   help="override any other recipe field, e.g. --set schedule=onecycle --set warmup_epochs=2 "
                        "--set weight_decay=5e-4 (repeatable; the fields and their values: normlab recipes NAME)")
    p.add_argument("--train-size", type=int, help="train on the first N training images only")
    p.add_argument("--val-size", type=int, default=0,
                   help="hold out N training images and evaluate on them each epoch; such a run never touches "
                        "the test set (tune here, then train on all 50,000 and test once)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    p.add_argument("--precision", default="auto",
                   help="fp32, bf16, or auto: bf16 where the hardware has it, else fp32 (default: auto)")
    p.add_argument("--data-dir", help="folder with cifar-10-batches-py/ or cifar-10-python.tar.gz "
                                      "(default: $NORMLAB_DATA, else ./data; downloaded if missing)")
    p.add_argument("--out", help="run folder (default: runs/<arch>-<norm>-<recipe>-seed<seed>)" if single
                   else f"folder holding one folder per run and the report (default: {out_default})")
    p.add_argument("--compile", nargs="?", const="on", default="auto", choices=COMPILE_MODES,
                   help="torch.compile the model: auto compiles where normlab measured it faster for this "
                        "kind of machine, architecture, norm, precision and batch size (docs/benchmarks.md), "
                        "on (also plain --compile) or off (default: auto)")
    p.add_argument("--no-budget", action="store_true", help="allow more than 50,000 parameters or 20 epochs")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run (the old one is kept until the new one has finished)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="normlab", description="Train and compare small CIFAR-10 classifiers that differ only in their "
                                    "normalization layer (BN, GN, LN).", epilog=ENVIRONMENT)
    parser.add_argument("--version", action="version", version=f"normlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train one model and write its run folder")
    _add_train_options(p, single=True)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last finished epoch")
    p.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: BatchNorm statistics over the global batch, not each process's slice "
                        "(CUDA only; see docs/scale-out.md)")

    p = sub.add_parser("sweep", help="train every combination of a grid of settings, locally or on Ray")
    p.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2",
                   help="keys: norms, seeds, batch-sizes, lrs, archs, recipes; e.g. --grid norms=bn,gn,ln seeds=0,1,2")
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local: one run after another in this process; ray: one Ray task per run (default: local)")
    p.add_argument("--address", help="Ray cluster to join, e.g. 10.0.0.1:6379 or auto (default: a local Ray)")
    p.add_argument("--cpus-per-task", type=float, default=1, help="CPUs Ray reserves per run (default: 1)")
    p.add_argument("--gpus-per-task", type=float, default=0, help="GPUs Ray reserves per run (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed when the grid has no seeds (default: 0)")
    p.add_argument("--norm", default="bn", help="norm when the grid has no norms (default: bn)")
    _add_train_options(p, single=False, out_default="runs/sweep")

    p = sub.add_parser("compare", help="train one model per norm (and seed) and write a comparison report")
    p.add_argument("--norms", default="bn,gn,ln", help="comma-separated norms (default: bn,gn,ln)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    _add_train_options(p, single=False, out_default="runs/compare-<arch>-<recipe>")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the report from the runs of these norms and seeds that are finished")

    p = sub.add_parser("leaderboard", help="every norm under one fixed protocol (S8 and/or the best ConvMixer; "
                       "the recipe's batch and batch 4; seeds 0-2), with confidence intervals and paired "
                       "differences to BN")
    p.add_argument("--norms", default="bn,gn,ln",
                   help=f"comma-separated norms, built in ({', '.join(NORMS)}) or package.module:factory; bn is "
                        "always included (default: bn,gn,ln)")
    p.add_argument("--protocols", default="s8", help="comma-separated: s8, convmixer (default: s8)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--quick", action="store_true",
                   help="2 epochs on 5,000 images, to try a norm in minutes; labelled QUICK in every output")
    p.add_argument("--out", default="runs/leaderboard", help="folder for the runs and the board (default: "
                   "runs/leaderboard)")
    p.add_argument("--backend", default="local", choices=["local", "ray"], help="as for sweep (default: local)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the board from finished runs (and list the runs it still lacks)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    p.add_argument("--precision", default="auto", help="fp32, bf16 or auto (default: auto)")
    p.add_argument("--data-dir", help="CIFAR-10 folder (as for train)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")

    p = sub.add_parser("report", help="a comparison report of finished runs from any folders (e.g. different "
                       "learning rates or architectures); redraws their figures from their data")
    p.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders")
    p.add_argument("--out", required=True, help="folder for report.md, report.html and curves.png")
    p.add_argument("--title", help="the report's title (default: its architectures and norms)")

    p = sub.add_parser("study", help="studies: batch-size (accuracy against batch size, one line per norm)")
    p.add_argument("kind", choices=["batch-size"], help="which study")
    p.add_argument("--norms", default="bn,gn,ln", help="comma-separated norms (default: bn,gn,ln)")
    p.add_argument("--batch-sizes", default="2,4,8,16,32,64,128",
                   help="comma-separated batch sizes (default: 2,4,8,16,32,64,128); the learning rate is "
                        "scaled linearly: lr = recipe lr x batch / 128")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_train_options(p, single=False, out_default="runs/study-batch-size-<arch>-<recipe>")

    p = sub.add_parser("evaluate", help="test accuracy, per-class accuracy and confusion matrix of a trained model")
    p.add_argument("path", nargs="?", help="run folder or .safetensors weights file (or use --pretrained)")
    p.add_argument("--pretrained", metavar="NORM",
                   help=f"evaluate the packaged pretrained model of this norm ({', '.join(USER_NORMS)}) instead")
    p.add_argument("--data-dir", help="CIFAR-10 folder (as for train)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    p.add_argument("--flip-tta", action="store_true",
                   help="also report accuracy with flip test-time augmentation (apart from the single-view figure)")
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="test: the 10,000 test images (default); val: the held-out training images a "
                        "--val-size run was judged on (read from its config.json)")

    p = sub.add_parser("predict", help="classify image files with a trained model",
                       usage="normlab predict [-h] [--top TOP] (PATH | --pretrained NORM) IMAGE [IMAGE ...]")
    p.add_argument("inputs", nargs="+", metavar="PATH IMAGE",
                   help="run folder or .safetensors weights file (omit it with --pretrained), then image files "
                        "(any size; resized to 32x32)")
    p.add_argument("--pretrained", metavar="NORM",
                   help=f"use the packaged pretrained model of this norm ({', '.join(USER_NORMS)})")
    p.add_argument("--top", type=int, default=3, help="classes to show per image (default: 3)")

    p = sub.add_parser("robustness", help="accuracy under CIFAR-10-C style corruptions (noise, blur, weather, "
                       "digital; severities 1-5), optionally with test-time BatchNorm adaptation")
    p.add_argument("paths", nargs="*", metavar="PATH", help="run folders or .safetensors weights files")
    p.add_argument("--pretrained", metavar="NORMS",
                   help=f"also the packaged pretrained models of these norms, comma-separated ({', '.join(USER_NORMS)})")
    p.add_argument("--corruptions", help="comma-separated (default: all 14; see docs/robustness.md)")
    p.add_argument("--severities", default="1,2,3,4,5", help="comma-separated, 1-5 (default: all)")
    p.add_argument("--adapt-bn", action="store_true",
                   help="also report accuracy after re-estimating BatchNorm statistics on each corrupted set "
                        "(no labels); models without BatchNorm are reported as having nothing to adapt")
    p.add_argument("--limit", type=int, help="use the first N test images only (default: all 10,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions' random draws (default: 0)")
    p.add_argument("--out", default="runs/robustness", help="report folder (default: runs/robustness)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a robustness report already in --out, measuring every model again")
    p.add_argument("--update", action="store_true",
                   help="replace a robustness report already in --out with one of the models passed now, measuring "
                        "only those it does not hold with the same weights and settings")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: redraw the report (md, html, figures) in --out from its robustness.json")
    p.add_argument("--data-dir", help="CIFAR-10 folder (as for train)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("export", help="export a trained model to ONNX or TorchScript (BatchNorm folded), "
                       "optionally int8-quantized, with its accuracy, size and latency")
    p.add_argument("path", nargs="?", help="run folder or .safetensors weights file (or use --pretrained)")
    p.add_argument("--pretrained", metavar="NORM",
                   help=f"export the packaged pretrained model of this norm ({', '.join(USER_NORMS)}) instead")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="(default: onnx)")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx: static int8 quantization with ONNX Runtime, calibrated on "
                        "training images, with its test accuracy")
    p.add_argument("--calibration-images", type=int, default=1000,
                   help="training images the int8 ranges are calibrated on (default: 1000)")
    p.add_argument("--no-fold", action="store_true", help="keep BatchNorm layers as they are")
    p.add_argument("--out", help="output folder (default: runs/export/<model name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an export already in --out")
    p.add_argument("--data-dir", help="CIFAR-10 folder (as for train)")

    p = sub.add_parser("recipes", help="the recipe presets; with a name, every setting of that recipe")
    p.add_argument("name", nargs="?", help="a preset (default: list them all)")
    p.add_argument("--all", action="store_true", help="list the experimental presets too")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="recipe_set",
                   help="show the recipe as train would run it with these overrides (repeatable)")

    p = sub.add_parser("summary", help="layer table: output shape, parameters, receptive field")
    p.add_argument("--arch", default="s8", help=f"architecture: {', '.join(ARCH_NAMES)} (default: s8)")
    p.add_argument("--norm", default="bn", help=f"normalization: {', '.join(NORMS)}, or package.module:factory "
                   "(default: bn)")
    return parser


def parse_list(text: str, what: str, cast=str) -> list:
    """``"bn,gn"`` -> ``["bn", "gn"]`` (``cast`` applied to each), or a one-line error."""
    from .study import parse_list as parse

    return parse(text, what, cast=cast)


def config_from_args(a: argparse.Namespace, **fixed):
    """The one place a TrainConfig is built from command-line arguments (``fixed``: what the command sets
    itself, e.g. a study's batch size)."""
    from .config import TrainConfig

    fields = dict(arch=a.arch, norm=getattr(a, "norm", "bn"), recipe=a.recipe, seed=getattr(a, "seed", 0),
                  epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, recipe_overrides=parse_settings(a.recipe_set),
                  train_size=a.train_size, val_size=a.val_size, device=a.device, precision=a.precision,
                  data_dir=a.data_dir, out=getattr(a, "out", None), budget=not a.no_budget,
                  resume=getattr(a, "resume", False), overwrite=a.overwrite, progress=not a.no_progress,
                  compile=a.compile, sync_bn=getattr(a, "sync_bn", False))
    return TrainConfig(**{**fields, **fixed})


def _headline(r: dict) -> str:
    from .metrics import headline

    return headline(r)


def cmd_train(a) -> None:
    from . import api, distributed

    cfg = config_from_args(a)
    r = api.train(cfg)
    if not distributed.from_env().is_main:
        return  # under torchrun, rank 0 reports
    print(f"done: train {r['train_acc']:.2f}%  {_headline(r)}  in {r['seconds']:.0f} s "
          f"({r['images_per_second']:,.0f} img/s) -> {cfg.out or cfg.default_out()}")


def cmd_compare(a) -> None:
    from . import api

    results = api.compare(parse_list(a.norms, "norms"), parse_list(a.seeds, "seeds", cast=int), a.out,
                          config_from_args(a, out=None), report_only=a.report_only)
    for r in results:
        print(f"{r['norm']} seed {r['seed']}: train {r['train_acc']:.2f}%  {_headline(r)}  {r['seconds']:.0f} s")


def cmd_report(a) -> None:
    from . import api

    results = api.report(a.runs, a.out, a.title)
    print(f"report of {len(results)} run{'s' * (len(results) != 1)}: {a.out}/report.md and {a.out}/report.html")


def cmd_study(a) -> None:
    from . import api

    if a.batch_size is not None:
        raise NormlabError("--batch-size does not apply to a batch-size study; use --batch-sizes")
    results = api.study_batch_size(parse_list(a.norms, "norms"), parse_list(a.batch_sizes, "batch-sizes", cast=int),
                                   a.out, config_from_args(a, out=None))
    for r in results:
        print(f"{r['norm']} batch {r['batch_size']}: {_headline(r)}  {r['seconds']:.0f} s")


def cmd_sweep(a) -> None:
    from . import api
    from .metrics import held_out
    from .sweeps import parse_grid

    grid = parse_grid(a.grid)
    results = api.sweep(grid, a.out or "runs/sweep", config_from_args(a, out=None), backend=a.backend,
                        address=a.address, cpus_per_task=a.cpus_per_task, gpus_per_task=a.gpus_per_task)
    held = held_out(results[0])
    print(f"done: {len(results)} runs, {held} accuracy {min(r[f'{held}_acc'] for r in results):.2f}% to "
          f"{max(r[f'{held}_acc'] for r in results):.2f}%")


def cmd_leaderboard(a) -> None:
    from . import api

    rows = api.leaderboard(parse_list(a.norms, "norms"), parse_list(a.protocols, "protocols"), a.out,
                           seeds=parse_list(a.seeds, "seeds", cast=int), quick=a.quick, backend=a.backend,
                           report_only=a.report_only, device=a.device, precision=a.precision, data_dir=a.data_dir,
                           progress=not a.no_progress)
    for r in rows:
        spread = "" if r["ci95"] is None else f" ± {r['ci95']:.2f}"
        seeds = f"{r['seeds']} seed{'' if r['seeds'] == 1 else 's'}"
        print(f"{r['protocol']} batch {r['batch']} {r['norm']}: {r['test_acc']:.2f}{spread}% ({seeds})")


def cmd_evaluate(a) -> None:
    from . import api
    from .data import CLASSES

    out = api.evaluate(a.path, pretrained=a.pretrained, split=a.split, data_dir=a.data_dir, device=a.device,
                       flip_tta=a.flip_tta)
    if a.json:
        print(json.dumps(out, indent=2))
        return
    s = "val" if "val_acc" in out else "test"
    print(f"{s} accuracy {out[f'{s}_acc']:.2f}%  (loss {out[f'{s}_loss']:.4f}, {out['images']:,} images)")
    if a.flip_tta:
        print(f"with flip test-time augmentation {out[f'{s}_acc_flip_tta']:.2f}% (mean of each image's and its "
              "mirror's logits; not the single-view figure)")
    print("\nper-class accuracy:")
    for name, acc in out[f"per_class_{s}_acc"].items():
        print(f"  {name:<11}{acc:6.2f}%")
    print("\nconfusion matrix (rows: true, columns: predicted):")
    print(" " * 11 + "".join(f"{c[:5]:>6}" for c in CLASSES))
    for name, row in zip(CLASSES, out["confusion_matrix"]):
        print(f"{name:<11}" + "".join(f"{v:>6}" for v in row))


def _is_model_path(text: str) -> bool:
    from pathlib import Path

    return Path(text).is_dir() or text.endswith(".safetensors")


def cmd_predict(a) -> None:
    from . import api

    path, images = (None, a.inputs) if a.pretrained else (a.inputs[0], a.inputs[1:])
    if a.pretrained and _is_model_path(images[0]):
        raise NormlabError(f"{images[0]} is a model, and --pretrained {a.pretrained} names another; pass one "
                           "of them")
    if not images:
        raise NormlabError("pass a model (run folder, .safetensors file or --pretrained NORM) and at least one image")
    for name, top in zip(images, api.predict(path, images, pretrained=a.pretrained, top=a.top)):
        print(f"{name}: " + ", ".join(f"{c} {100 * p:.1f}%" for c, p in top))


def cmd_robustness(a) -> None:
    from . import api

    pretrained = parse_list(a.pretrained, "pretrained") if a.pretrained else []
    corruptions = parse_list(a.corruptions, "corruptions") if a.corruptions else None
    severities = parse_list(a.severities, "severities", int)
    r = api.robustness(a.paths, pretrained=pretrained, out=a.out, corruptions=corruptions, severities=severities,
                       adapt_bn=a.adapt_bn, limit=a.limit, seed=a.seed, data_dir=a.data_dir, device=a.device,
                       overwrite=a.overwrite, update=a.update, report_only=a.report_only)
    for name, m in r["models"].items():
        line = f"{name}: clean {m['clean_acc']:.2f}%, mean corruption accuracy {m['mean_corruption_acc']:.2f}%"
        if m["adapted_acc"] is not None:
            line += f" (BN adapted: {m['adapted']['mean_corruption_acc']:.2f}%)"
        print(line)


def cmd_export(a) -> None:
    from . import api

    card = api.export(a.path, pretrained=a.pretrained, format=a.format, int8=a.int8, fold=not a.no_fold, out=a.out,
                      calibration_images=a.calibration_images, data_dir=a.data_dir, overwrite=a.overwrite)
    for name, info in card["files"].items():
        print(f"{name}: {info['bytes'] / 1024:,.0f} KiB, test accuracy {info['test_acc']:.2f}%"
              + (f", max |logit difference| to PyTorch {info['max_abs_diff']:.1e}" if "max_abs_diff" in info else ""))


def cmd_recipes(a) -> None:
    import textwrap

    if a.name is None:
        if a.recipe_set:
            raise NormlabError("recipes --set needs a recipe name, e.g. normlab recipes fast --set lr=0.1")
        presets = all_recipes() if a.all else RECIPES
        width = max(map(len, presets))
        for name, recipe in presets.items():
            lines = textwrap.wrap(describe(recipe), 100 - width) or [""]
            print(f"{name:<{width}}  {lines[0]}")
            for line in lines[1:]:
                print(f"{'':<{width}}  {line}")
        if not a.all:
            print(f"\n({len(all_recipes()) - len(RECIPES)} experimental presets: normlab recipes --all)")
        return
    overrides = parse_settings(a.recipe_set)
    recipe = get_recipe(a.name, **overrides)
    print(f"{recipe.name}: {describe(recipe)}")
    if overrides:
        print("with " + ", ".join(f"{k}={v}" for k, v in overrides.items()) + ":")
    fields = recipe.to_dict()
    fields.pop("name")
    width = max(map(len, fields))
    for key, value in fields.items():
        print(f"  {key:<{width}}  {value}")


def cmd_summary(a) -> None:
    from .models import build_model
    from .summary import format_table

    print(format_table(build_model(a.arch, a.norm), f"{a.arch} with {a.norm}"))


COMMANDS = {"train": cmd_train, "compare": cmd_compare, "leaderboard": cmd_leaderboard, "report": cmd_report,
            "study": cmd_study,
            "sweep": cmd_sweep, "evaluate": cmd_evaluate, "predict": cmd_predict, "robustness": cmd_robustness,
            "export": cmd_export, "recipes": cmd_recipes,
            "summary": cmd_summary}
# Commands that compute with torch on the CPU: they keep freed memory for reuse (normlab.heap).
COMPUTING = {"train", "compare", "leaderboard", "study", "sweep", "evaluate", "predict", "robustness", "export"}


def _os_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    fix = {13: "pass a path you can write to", 30: "pass a path on a writable disk",
           28: "free some disk space", 20: "a part of the path is a file, not a folder; pass another path",
           21: "pass a file, not a folder", 2: "check the path",
           17: "a file of that name is in the way; pass another path"}.get(exc.errno, "check the path and try again")
    return f"{where}{exc.strerror or exc}; {fix}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in COMPUTING:
        from .heap import keep_freed_memory

        keep_freed_memory()  # large activations stop page-faulting every step (normlab.heap)
    rank = ""  # under torchrun: "rank R/W: " before each message
    finished = False
    distributed = None
    try:
        if args.command == "train":
            from . import distributed

            rank = distributed.from_env().prefix
        elif os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
            raise NormlabError(f"torchrun runs `normlab train` (one model, data-parallel); `normlab "
                               f"{args.command}` runs in one process (many runs at once: `normlab sweep`)")
        COMMANDS[args.command](args)
        finished = True
    except NormlabError as exc:
        if distributed is None or not isinstance(exc, distributed.SharedError):  # rank 0 has printed it
            print(f"normlab: error: {rank}{exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the disk, not normlab: a full disk, a read-only folder, a path through a file
        print(f"normlab: error: {rank}{_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("normlab: interrupted; finished epochs are saved: rerun with --resume to continue", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        if not rank:
            raise
        # Most often a peer that stopped: the collective it left waiting fails here.
        print(f"normlab: error: {rank}stopped: {distributed.first_line(exc)} (if another rank failed, its "
              "message says why)", file=sys.stderr)
        return 1
    finally:
        if distributed is not None:
            distributed.shutdown(finished)  # a no-op without a process group
    return 0


if __name__ == "__main__":
    sys.exit(main())
