"""Training throughput: a faithful re-creation of the reference pipeline vs normlab's engine.

(a) reference: a per-sample Dataset (PIL image -> float32 tensor -> normalize, as torchvision's
    ToTensor + Normalize do), a DataLoader with batch 128 and shuffle, float32 NCHW, the same S8 model,
    SGD lr 0.01 momentum 0.9, log-softmax + NLL.
(b) normlab: data as uint8 tensors on the device, batched conversion, channels_last, the engine's own
    ``train_epoch``, with precision and torch.compile decided as `normlab train` decides them by default
    (``--precision auto --compile auto``) unless given.

Both run in this one process, one after the other, on the same model; each is timed in steady state
(after a warm-up). Also prints the model's FLOPs, the achieved GFLOP/s and this machine's matmul peak.

    python benchmarks/throughput.py --data-dir ../shared/data [--norms bn,gn,ln] [--images 6400] [--json FILE]

Every figure is printed (and saved with ``--json``) with this machine's CPU model, vector flags and class.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from normlab import build_model
from normlab.data import load_cifar10
from normlab.devices import (cpu_class, cpu_description, cpu_supports_bf16, resolve_compile, resolve_device,
                             resolve_precision)
from normlab.engine import FullBatchCompiled, train_epoch
from normlab.optim import make_optimizer
from normlab.models.common import CIFAR_MEAN, CIFAR_STD
from normlab.summary import forward_macs
from normlab.recipes import get_recipe

from _timing import command, write_record


class ReferenceDataset(torch.utils.data.Dataset):
    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images_hwc, labels
        self.mean = torch.tensor(CIFAR_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CIFAR_STD).view(3, 1, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i])  # torchvision's CIFAR10 hands PIL images to transforms
        x = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1).div(255)  # ToTensor
        return (x - self.mean) / self.std, int(self.labels[i])  # Normalize


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def bench_reference(norm: str, x_uint8: torch.Tensor, y: torch.Tensor, images: int) -> float:
    torch.manual_seed(0)
    model = build_model("s8", norm)
    model.normalize = torch.nn.Identity()  # the reference normalizes in the Dataset
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ds = ReferenceDataset(x_uint8.permute(0, 2, 3, 1).numpy(), y.numpy())
    loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True)
    model.train()
    seen, t0 = 0, None
    warmup = 3 * 128
    while True:
        for xb, yb in loader:
            loss = F.nll_loss(F.log_softmax(model(xb), dim=1), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(yb)
            if t0 is None and seen >= warmup:
                t0, seen = time.perf_counter(), 0
            elif t0 is not None and seen >= images:
                return seen / (time.perf_counter() - t0)


def bench_engine(norm: str, x_uint8, y, images: int, device: torch.device, precision: str,
                 compile: bool) -> float:
    torch.manual_seed(0)
    model = build_model("s8", norm).to(device, memory_format=torch.channels_last)
    step = FullBatchCompiled(model, 128) if compile else model
    recipe = get_recipe("reference")
    opt = make_optimizer(model, recipe)
    x, yy = x_uint8[:images].to(device), y[:images].to(device)
    kw = dict(seed=0, device=device, precision=precision, bar=None)
    train_epoch(step, opt, recipe, x[:3 * 128], yy[:3 * 128], epoch=0, **kw)  # warm-up (and compile)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    train_epoch(step, opt, recipe, x, yy, epoch=1, **kw)  # ends with a sync (float of the loss)
    return images / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir")
    p.add_argument("--norms", default="bn,gn,ln")
    p.add_argument("--images", type=int, default=6400, help="images per timed measurement")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--repeats", type=int, default=3, help="measurements per pipeline and norm (median)")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="as `normlab train --compile` (default: auto, as normlab train decides per norm)")
    p.add_argument("--markdown", help="also write the results as a markdown section to this file")
    p.add_argument("--json", help="also write the results, the command and the CPU to this JSON file")
    a = p.parse_args()
    device = resolve_device(a.device)
    precision = resolve_precision(a.precision, device)
    data = load_cifar10(a.data_dir)
    x, y = data.train_x, data.train_y
    macs = forward_macs(build_model("s8", "bn"))
    train_flop = 6 * macs  # forward 2*MACs, backward about twice the forward
    cpu = cpu_description()
    lines = [f"machine: {cpu['model']} (class {cpu_class(cpu)}; flags {' '.join(cpu['flags']) or 'none'}), "
             f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}, "
             f"native bf16: {cpu_supports_bf16()}"]
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    lines.append(f"matmul peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")
    lines.append(f"S8: {macs / 1e6:.1f} M multiply-adds per image forward, ~{train_flop / 1e6:.0f} MFLOP per "
                 f"trained image")
    lines.append(f"engine: device {device.type}, precision {precision}, --compile {a.compile}; "
                 f"{a.images:,} images per measurement, median of {a.repeats}")
    for line in lines:
        print(line)
    print(f"{'norm':<6}{'compiled':>9}{'reference img/s':>17}{'normlab img/s':>15}{'ratio':>8}{'GFLOP/s':>10}"
          f"{'% of peak':>11}")
    peak = peak16 if precision == "bf16" else peak32
    table = ["| norm | compiled | reference img/s | normlab img/s | ratio | GFLOP/s | % of matmul peak |",
             "|---|---|---:|---:|---:|---:|---:|"]
    rows = []
    for norm in a.norms.split(","):
        compiled = resolve_compile(a.compile, device, "s8", norm, precision, 128)
        refs, ours = [], []
        for _ in range(a.repeats):  # alternating, so a slow spell of the machine hits both
            if not a.skip_reference:
                refs.append(bench_reference(norm, x, y, a.images))
            ours.append(bench_engine(norm, x, y, a.images, device, precision, compiled))
        ref = statistics.median(refs) if refs else float("nan")
        mine = statistics.median(ours)
        gflops = mine * train_flop / 1e9
        print(f"{norm:<6}{'yes' if compiled else 'no':>9}{ref:>17,.0f}{mine:>15,.0f}{mine / ref:>8.2f}{gflops:>10.1f}"
              f"{100 * gflops / peak:>10.1f}%", flush=True)
        ref_cell, ratio_cell = ("-", "-") if a.skip_reference else (f"{ref:,.0f}", f"{mine / ref:.2f}x")
        table.append(f"| {norm} | {'yes' if compiled else 'no'} | {ref_cell} | {mine:,.0f} | {ratio_cell} | "
                     f"{gflops:.1f} | {100 * gflops / peak:.1f}% |")
        rows.append({"norm": norm, "precision": precision, "compiled": compiled,
                     "reference_images_per_second": None if a.skip_reference else round(ref, 1),
                     "normlab_images_per_second": round(mine, 1),
                     "ratio": None if a.skip_reference else round(mine / ref, 3),
                     "reference_runs": [round(v, 1) for v in refs], "normlab_runs": [round(v, 1) for v in ours]})
    if a.markdown:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        text = "\n".join([f"### {stamp}: `{command()}`", ""] + [f"- {line}" for line in lines] + [""] + table)
        with open(a.markdown, "a") as fh:
            fh.write(text + "\n\n")
    if a.json:
        write_record(a.json, {"cores": os.cpu_count(), "device": device.type, "images_per_measurement": a.images,
                              "repeats": a.repeats, "rows": rows,
                              "matmul_peak_gflops": {"fp32": round(peak32), "bf16": round(peak16)}})


if __name__ == "__main__":
    main()
