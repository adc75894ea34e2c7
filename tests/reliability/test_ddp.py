"""Scale-out: 2 CPU processes (gloo) train with the same global batch as one process, and the contrastive
losses gather their negatives / statistics across ranks."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightly.loss import BarlowTwinsLoss, NTXentLoss, VICRegLoss
from lightly.loss.barlow_twins_loss import _normalize, _off_diagonal

from medssl.cli import main
from tests.reliability.helpers import TINY, run_cli

# One epoch's mean NT-Xent loss of this tiny run varies with the random views alone by sd 0.11 (measured:
# 8 view streams, same init and data order: 4.30 .. 4.63). Two processes differ from one only there and in
# BatchNorm statistics (per rank: 16 images x 2 views instead of 32 x 2; SyncBatchNorm has no CPU kernel).
# Measured |difference| at seeds 0 and 1: 0.13, 0.21. Tolerance: 3 sd.
DDP_LOSS_TOLERANCE = 0.35


def test_two_process_ddp_pretraining_matches_one_process_at_the_same_global_batch(tmp_path):
    """Slow-ish (~45 s: two processes start, gloo rendezvous); kept tiny so it runs in the normal suite."""
    args = ["pretrain", *TINY, "--epochs", "1", "--seed", "0"]
    ddp = run_cli([*args, "--out", str(tmp_path / "ddp"), "--devices", "2", "--strategy", "ddp"])
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert ddp.stdout.count("pre-trained encoder written") == 1  # rank 1 trains but does not report
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert two["steps"] == one["steps"]  # same global batch -> same number of optimizer steps
    assert abs(two["train"]["loss"] - one["train"]["loss"]) < DDP_LOSS_TOLERANCE
    assert (tmp_path / "ddp" / "encoder.pt").is_file()


def test_global_batch_must_split_evenly_over_processes(tmp_path, capsys):
    code = main(["pretrain", *TINY, "--batch-size", "33", "--epochs", "1", "--out", str(tmp_path / "x"),
                 "--devices", "2", "--strategy", "ddp"])
    assert code == 2 and "divisible" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_sync_batchnorm_on_cpu_processes_is_refused_before_writing(tmp_path, capsys):
    code = main(["pretrain", *TINY, "--epochs", "1", "--out", str(tmp_path / "x"), "--devices", "2",
                 "--strategy", "ddp", "--sync-batchnorm"])
    assert code == 2 and "SyncBatchNorm" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _losses(z0: torch.Tensor, z1: torch.Tensor) -> list[float]:
    return [float(NTXentLoss(temperature=0.2, gather_distributed=True)(z0, z1)),
            float(VICRegLoss(gather_distributed=True)(z0, z1)),
            float(BarlowTwinsLoss(gather_distributed=True)(z0, z1))]


def _barlow_standardised_per_rank(z0: torch.Tensor, z1: torch.Tensor, world: int, lambda_param: float = 0.005) -> float:
    """lightly's distributed Barlow Twins: each rank standardises its own slice, the cross-correlation
    matrices are averaged. Not the single-process value (that standardises over the global batch)."""
    c = sum(_normalize(a).T @ _normalize(b) / len(a) for a, b in zip(z0.chunk(world), z1.chunk(world), strict=True))
    c = c / world
    return float((torch.diagonal(c) - 1).pow(2).sum() + lambda_param * _off_diagonal(c).pow(2).sum())


def _rank(rank: int, world: int, port: int, z0: torch.Tensor, z1: torch.Tensor, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    part = slice(rank * len(z0) // world, (rank + 1) * len(z0) // world)
    losses = torch.tensor(_losses(z0[part], z1[part]))
    dist.all_reduce(losses)  # the mean over ranks is what DDP optimises and what sync_dist logs
    if rank == 0:
        torch.save(losses / world, out)
    dist.destroy_process_group()


def test_contrastive_losses_gather_across_ranks_to_the_single_process_value(tmp_path):
    torch.manual_seed(0)
    z0, z1 = torch.randn(16, 8), torch.randn(16, 8)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "losses.pt")
    mp.start_processes(_rank, args=(2, port, z0, z1, out), nprocs=2, join=True, start_method="fork")
    ntxent, vicreg, barlow = torch.load(out, weights_only=True).tolist()
    single = _losses(z0, z1)  # no process group: gather_distributed is a no-op
    # negatives (NT-Xent) and variance/covariance statistics (VICReg) span the global batch: exact
    assert ntxent == pytest.approx(single[0], rel=1e-5) and vicreg == pytest.approx(single[1], rel=1e-5)
    # Barlow Twins standardises per rank (lightly); documented, and checked against that definition
    assert barlow == pytest.approx(_barlow_standardised_per_rank(z0, z1, 2), rel=1e-5)
    assert barlow != pytest.approx(single[2], rel=1e-3)
