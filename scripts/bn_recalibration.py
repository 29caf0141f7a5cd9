"""Does recomputing BatchNorm statistics after training change a validation run's accuracy? (maintainers)

    python scripts/bn_recalibration.py RUN [RUN ...] [--data-dir DIR]

For each finished validation run (``normlab train --val-size N``): its recorded validation accuracy, the
saved model's accuracy on the same held-out images again, and the accuracy after every BatchNorm layer's
running statistics are recomputed as plain averages over the run's training images (unaugmented, float32,
batches of 500; SWA's ``update_bn``). Reads the training images only for the statistics; never the test set.
"""
from __future__ import annotations

import argparse
import sys

import torch

from normlab.data import load_cifar10
from normlab.data import split
from normlab.devices import to_input
from normlab.evaluation import evaluate
from normlab.runs import run_val_size
from normlab.weights import load_model
from normlab.errors import NormlabError
from normlab.runs import read_json


@torch.no_grad()
def recalibrate(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 500) -> None:
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise NormlabError("the model has no BatchNorm layers")
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all the batches
    model.train()
    for i in range(0, len(images), batch_size):  # float32: the precision the saved weights are judged in
        model(to_input(images[i:i + batch_size]))
    model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="recompute BatchNorm statistics of validation runs")
    ap.add_argument("runs", nargs="+", metavar="RUN")
    ap.add_argument("--data-dir", help="CIFAR-10 folder (default: NORMLAB_DATA or normlab's own)")
    a = ap.parse_args(argv)
    try:
        sizes = [run_val_size(run) for run in a.runs]  # every run checked before the data set is read
        data = load_cifar10(a.data_dir)
        cpu = torch.device("cpu")
        for run, val_size in zip(a.runs, sizes):
            train_x, _, (_, val_x, val_y) = split(data, None, val_size)
            model = load_model(run)
            before = evaluate(model, val_x, val_y, cpu, "fp32")["acc"]
            recalibrate(model, train_x)
            after = evaluate(model, val_x, val_y, cpu, "fp32")["acc"]
            recorded = read_json(f"{run}/results.json")["val_acc"]
            print(f"{run}: recorded {recorded:.2f}, again {before:.2f}, recalibrated {after:.2f} "
                  f"({after - before:+.2f})", flush=True)
    except NormlabError as exc:
        print(f"bn_recalibration: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
