"""SimCLR pre-training throughput: medssl's step against a reference loop written as lightly's examples are.

    python benchmarks/pretrain_throughput.py [--reps 3] [--steps 6] [--configs 2d28,2d64,3d28] [--stem small]

Both sides train the same MONAI ResNet-18 with lightly's NT-Xent loss on the same uint8 images, batch, size
and dtype. medssl: whole uint8 batches sliced from memory, views made batched on the device, one forward
over both views, driven by its Lightning ``Pretrainer``. Reference: a ``Dataset`` applying per-sample
transforms (lightly's ``SimCLRTransform`` on PIL images in 2D; MONAI array transforms in 3D, since lightly
has none), a ``DataLoader`` with workers, two forward passes per step. Repetitions alternate between the
two so that drifting machine load hits both alike. One JSON line per configuration: images/s of each (an
image counts once, whatever its number of views), their ratio, and the achieved FLOP/s of medssl's step
as a fraction of two limits: the measured peak (the best of large GEMMs and of a large channels-last
convolution, all threads) and, on a CPU, the theoretical FMA peak (cores x fp32 lanes x FMA units x 2 x
clock, from /proc/cpuinfo; the FMA-unit count is an assumption the output states). On a GPU both sides
use bf16 autocast and ResNet-50 at 224 px is added.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from monai import transforms as mt
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from medssl.data.synthetic import make_lesions
from medssl.methods.base import Pretrainer
from medssl.methods.contrastive.simclr import SimCLR
from medssl.models.encoder import BackboneSpec, Encoder
from medssl.training import batch_loader, quiet_lightning

CONFIGS = {  # name -> (spatial_dims, size, batch, backbone)
    "2d28": (2, 28, 64, "resnet18"),
    "2d64": (2, 64, 32, "resnet18"),
    "3d28": (3, 28, 8, "resnet18"),
    "2d224": (2, 224, 64, "resnet50"),  # GPU only
}


class StepClock(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def medssl_rate(model: Pretrainer, images: np.ndarray, batch: int, steps: int, gpu: bool) -> float:
    clock = StepClock()
    trainer = pl.Trainer(max_steps=steps + 1, accelerator="gpu" if gpu else "cpu", devices=1,
                         precision="bf16-mixed" if gpu else "32-true", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[clock],
                         use_distributed_sampler=False, num_sanity_val_steps=0)
    from medssl.data.dataset import Split

    loader = batch_loader(Split(images, np.zeros(len(images), np.int64)), batch, shuffle=True, drop_last=True)
    trainer.fit(model, train_dataloaders=loader)
    return batch * steps / (clock.times[-1] - clock.times[0])  # the first step (warm-up) is not counted


class TwoViewDataset(Dataset):
    def __init__(self, images: np.ndarray, spatial_dims: int, size: int) -> None:
        self.images = images
        self.spatial_dims = spatial_dims
        if spatial_dims == 2:
            self.transform = SimCLRTransform(input_size=size, cj_prob=0.0, random_gray_scale=0.0, min_scale=0.4,
                                             gaussian_blur=0.3, sigmas=(0.1, 1.0), rr_prob=1.0, rr_degrees=10.0,
                                             normalize=None)
        else:
            self.transform = mt.Compose([
                mt.ScaleIntensityRange(0, 255, 0, 1),
                mt.RandSpatialCrop((int(size * 0.74),) * 3, random_size=True),
                mt.Resize((size,) * 3),
                mt.RandFlip(prob=0.5, spatial_axis=0),
                mt.RandRotate(range_x=0.17, range_y=0.17, range_z=0.17, prob=1.0),
                mt.RandAdjustContrast(prob=0.5),
                mt.RandGaussianSmooth(prob=0.3),
                mt.RandGaussianNoise(prob=0.5, std=0.05),
            ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spatial_dims == 2:
            view0, view1 = self.transform(Image.fromarray(self.images[i, 0]))
        else:
            view0, view1 = (torch.as_tensor(self.transform(self.images[i])) for _ in range(2))
        return view0.float(), view1.float()


def reference_rate(model: nn.Module, loader_iter: object, steps: int, device: torch.device) -> float:
    criterion = NTXentLoss(temperature=0.2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(steps + 1):
        x0, x1 = next(loader_iter)
        x0, x1 = x0.to(device, non_blocking=True), x1.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = criterion(model(x0), model(x1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())
    return len(x0) * steps / (times[-1] - times[0])


def endless(loader: DataLoader):
    while True:
        yield from loader


def flops_per_image(model: Pretrainer, images: np.ndarray, batch: int) -> float:
    """Forward + backward FLOPs of one medssl SimCLR step, per image (both views included)."""
    model.log = lambda *args, **kwargs: None
    with FlopCounterMode(display=False) as counter:
        loss = model.training_step((torch.from_numpy(images[:batch]).to(model.device),
                                    torch.zeros(batch, dtype=torch.long, device=model.device)), 0)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def _best_seconds(work, repeats: int, device: torch.device) -> float:
    """The fastest of ``repeats`` timed calls of ``work`` (after one warm-up call)."""
    best = float("inf")
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first call warms up (oneDNN / cuBLAS pick their kernels, pages are touched)
            best = min(best, time.perf_counter() - start)
    return best


def measured_peak(device: torch.device, dtype: torch.dtype) -> dict:
    """Best FLOP/s of large GEMMs (several sizes, output preallocated) and of a large channels-last 3x3
    convolution, with every thread torch uses: what this machine's BLAS and oneDNN actually reach."""
    gemm = 0.0
    for n in ((2048, 4096, 8192) if device.type == "cuda" else (1024, 2048, 4096)):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        seconds = _best_seconds(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), 3, device)
        gemm = max(gemm, 2 * n**3 / seconds)
    batch, channels, side = (64, 256, 56) if device.type == "cuda" else (16, 128, 56)
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device=device, dtype=dtype)
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, side, side, device=device, dtype=dtype).to(memory_format=torch.channels_last)
    with torch.no_grad():
        seconds = _best_seconds(lambda: conv(x), 3, device)
    conv_flops = 2 * batch * channels * side * side * channels * 9 / seconds
    return {"gemm_gflop_s": round(gemm / 1e9, 1), "conv_gflop_s": round(conv_flops / 1e9, 1),
            "measured_peak_gflop_s": round(max(gemm, conv_flops) / 1e9, 1)}


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if not line.strip():
                    break  # the first processor is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _clock_ghz(info: dict[str, str]) -> tuple[float | None, str]:
    """The highest clock the machine reports: cpufreq's maximum, else /proc/cpuinfo's 'cpu MHz'."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as freq:
            return int(freq.read()) / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    if "cpu MHz" in info:
        return float(info["cpu MHz"]) / 1e3, "/proc/cpuinfo 'cpu MHz' (no cpufreq: a boost clock may be higher)"
    return None, "unknown"


def fma_peak(threads: int) -> dict:
    """Theoretical fp32 peak of the cores this run uses: cores x vector lanes x FMA units x 2 FLOP x clock,
    from what the machine reports. The FMA unit count is not reported; the assumption is stated."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    vendor, family = info.get("vendor_id", ""), int(info.get("cpu family", "0") or 0)
    if "avx512f" in flags:
        lanes = 16
        if vendor == "AuthenticAMD" and family == 25:  # Zen 4 splits 512-bit ops over two 256-bit FMA pipes
            units, why = 1, "AMD Zen 4: AVX-512 runs on two 256-bit FMA pipes = one 512-bit FMA per cycle"
        else:
            units, why = 2, "assumed 2 AVX-512 FMA units per core (server cores; some have 1: then half this)"
    elif "avx2" in flags and "fma" in flags:
        lanes, units, why = 8, 2, "assumed 2 AVX2 FMA units per core (Haswell and later, Zen 2 and later)"
    else:
        lanes, units, why = 4, 1, "no FMA/AVX2 flags: 4 lanes, 1 unit assumed"
    ghz, clock_source = _clock_ghz(info)
    peak = threads * lanes * units * 2 * ghz if ghz else None
    return {"cpu": info.get("model name", "unknown"), "cores_used": threads, "fp32_lanes": lanes, "fma_units": units,
            "clock_ghz": round(ghz, 3) if ghz else None, "clock_source": clock_source, "fma_assumption": why,
            "fma_peak_gflop_s": round(peak, 1) if peak else None}


def peaks(device: torch.device, dtype: torch.dtype) -> dict:
    """The measured peak and, on a CPU, the theoretical FMA peak beside it, with the clock the measured
    peak implies (above the reported clock: the cores boost, or they have more FMA units than assumed)."""
    measured = measured_peak(device, dtype)
    if device.type == "cuda":
        return {**measured, "fma_peak_gflop_s": None, "device": torch.cuda.get_device_name()}
    theory = fma_peak(torch.get_num_threads())
    flop_per_cycle = theory["cores_used"] * theory["fp32_lanes"] * theory["fma_units"] * 2
    return {**measured, **theory, "implied_clock_ghz": round(measured["measured_peak_gflop_s"] / flop_per_cycle, 3)}


def run(name: str, reps: int, steps: int, stem: str, workers: int, channels_last: bool = True) -> dict:
    spatial_dims, size, batch, backbone = CONFIGS[name]
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    n = max(4 * batch * (steps + 1), 256)
    images = make_lesions(spatial_dims, n=n, size=size, val_fraction=0.05, test_fraction=0.05).splits["train"].images
    spec = BackboneSpec(backbone, spatial_dims, 1, small_stem=stem == "small")
    torch.manual_seed(0)
    encoder = Encoder(spec)
    if channels_last:  # medssl's default (PretrainConfig.channels_last)
        encoder.use_channels_last()
    model = Pretrainer(encoder, [SimCLR(encoder)], [1.0], num_classes=2)
    reference = nn.Sequential(Encoder(spec), SimCLRProjectionHead(encoder.feature_dim, encoder.feature_dim, 128))
    reference.to(device)
    loader = DataLoader(TwoViewDataset(images, spatial_dims, size), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0, pin_memory=gpu)
    batches = endless(loader)
    ours, theirs = [], []
    for _ in range(reps):
        ours.append(medssl_rate(model, images, batch, steps, gpu))
        theirs.append(reference_rate(reference, batches, steps, device))
    medssl_img_s, reference_img_s = statistics.median(ours), statistics.median(theirs)
    model.to(device)
    flops = flops_per_image(model, images, batch)
    limits = peaks(device, torch.bfloat16 if gpu else torch.float32)
    achieved = flops * medssl_img_s / 1e9
    return {
        "config": name, "device": torch.cuda.get_device_name() if gpu else f"cpu x{torch.get_num_threads()} threads",
        "backbone": backbone, "stem": stem, "medssl_channels_last": channels_last, "batch": batch,
        "dtype": "bf16-autocast" if gpu else "float32",
        "reference_workers": workers, "medssl_img_s": round(medssl_img_s, 2),
        "reference_img_s": round(reference_img_s, 2),
        "ratio": round(medssl_img_s / reference_img_s, 3), "medssl_runs": [round(r, 2) for r in ours],
        "reference_runs": [round(r, 2) for r in theirs], "gflop_per_image": round(flops / 1e9, 3),
        "achieved_gflop_s": round(achieved, 1),
        "fraction_of_measured_peak": round(achieved / limits["measured_peak_gflop_s"], 3),
        "fraction_of_fma_peak": round(achieved / limits["fma_peak_gflop_s"], 3) if limits["fma_peak_gflop_s"] else None,
        **limits,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="2d28,2d64,3d28")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--stem", choices=["small", "standard"], default="small",
                        help="small: medssl's default 3x3 stride-1 stem; standard: 7x7 stride 2 + max-pool")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="reference DataLoader workers (lightly's examples use 8; capped at the core count)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="medssl side: channels-first, as with `medssl pretrain --no-channels-last`")
    parser.add_argument("--peaks-only", action="store_true", help="print only the measured and theoretical peaks")
    args = parser.parse_args()
    if args.peaks_only:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        print(json.dumps(peaks(device, torch.bfloat16 if device.type == "cuda" else torch.float32)))
        return
    quiet_lightning()
    configs = args.configs.split(",")
    if torch.cuda.is_available() and "2d224" not in configs:
        configs.append("2d224")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # Lightning may write lightning_logs/ under the working directory
        for name in configs:
            if name == "2d224" and not torch.cuda.is_available():
                continue
            print(json.dumps(run(name, args.reps, args.steps, args.stem, args.workers, args.channels_last)), flush=True)


if __name__ == "__main__":
    main()
