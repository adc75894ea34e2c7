"""DINO: paper defaults, multi-crop views, EMA teacher, centre update (one process and DDP), teacher temperature,
last-layer freezing, collapse monitor."""

import inspect
import math
import os
import pickle
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from lightly.loss import DINOLoss

from medssl.data.npz import load_npz
from medssl.errors import MedsslError
from medssl.methods.base import to_unit_float
from medssl.methods.contrastive.dino import DINO, collapse_monitor
from medssl.methods.registry import list_methods
from medssl.models.encoder import BackboneSpec, Encoder


def _make(spatial_dims: int = 2, **kwargs) -> tuple[Encoder, DINO]:
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec("resnet10", spatial_dims, 1, width=0.125))
    return encoder, DINO(encoder, output_dim=64, hidden_dim=32, bottleneck_dim=16, **kwargs)


def test_registered_as_contrastive_in_2d_and_3d():
    assert ("dino", "contrastive", (2, 3)) in list_methods()


# Caron et al. 2021 and facebookresearch/dino main_dino.py (teacher temperature: the paper's 0.04 -> 0.07 over 30 of
# 300 epochs; last layer frozen for 1 of 100 epochs; local crops 96 px next to 224 px global ones)
PAPER = {"momentum": 0.996, "output_dim": 65536, "hidden_dim": 2048, "bottleneck_dim": 256, "head_batch_norm": False,
         "norm_last_layer": True, "freeze_last_layer_fraction": 0.01, "student_temp": 0.1, "teacher_temp": 0.07,
         "warmup_teacher_temp": 0.04, "warmup_teacher_temp_fraction": 0.1, "center_momentum": 0.9,
         "n_local_crops": 8, "local_crop_fraction": 96 / 224, "global_crop_scale": (0.4, 1.0),
         "local_crop_scale": (0.05, 0.4)}


def test_defaults_are_the_papers():
    defaults = {name: p.default for name, p in inspect.signature(DINO).parameters.items() if name != "encoder"}
    assert {k: defaults[k] for k in PAPER} == PAPER


def test_local_crops_keep_the_papers_side_ratio_in_2d_and_3d():
    _, task = _make()
    assert task.local_size(torch.Size([28, 28])) == (12, 12)  # 96/224 of 28 px, rounded up
    assert task.local_size(torch.Size([14, 14, 14])) == (6, 6, 6)
    assert task.local_size(torch.Size([6, 6])) == (4, 4)  # never below 4 voxels a side


def test_last_layer_gets_no_update_while_frozen_then_learns():
    encoder, task = _make(freeze_last_layer_fraction=0.2)
    last = task.head.last_layer
    assert not last.weight_g.requires_grad  # norm_last_layer: unit-norm prototypes
    params = [p for p in [*encoder.parameters(), *task.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    x = torch.rand(4, 1, 16, 16)
    prototypes = last.weight_v.detach().clone()
    for progress in (0.1, 0.19):
        optimizer.zero_grad()
        task(encoder, x).loss.backward()
        assert torch.count_nonzero(last.weight_v.grad) == 0
        assert task.head.layers[0].weight.grad.abs().sum() > 0
        optimizer.step()
        task.on_step_end(encoder, progress)
    # AdamW's decoupled decay only rescales the rows, which the weight norm divides out
    assert torch.allclose(F.normalize(last.weight_v, dim=1), F.normalize(prototypes, dim=1), atol=1e-6)
    task.on_step_end(encoder, 0.2)
    optimizer.zero_grad()
    task(encoder, x).loss.backward()
    assert last.weight_v.grad.abs().sum() > 0


def test_a_pickled_task_still_freezes_its_last_layer():  # ddp_spawn pickles the model
    encoder, task = _make(freeze_last_layer_fraction=0.5)
    encoder, task = pickle.loads(pickle.dumps((encoder, task)))
    task(encoder, torch.rand(4, 1, 16, 16)).loss.backward()
    assert torch.count_nonzero(task.head.last_layer.weight_v.grad) == 0


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_student_sees_global_and_local_crops_teacher_only_global_ones(spatial_dims):
    encoder, task = _make(spatial_dims, n_local_crops=3)
    seen = {"student": [], "teacher": []}
    encoder.net.conv1.register_forward_pre_hook(lambda m, a: seen["student"].append(tuple(a[0].shape)))
    task.teacher_encoder.net.conv1.register_forward_pre_hook(lambda m, a: seen["teacher"].append(tuple(a[0].shape)))
    x = torch.rand(4, 1, *([16] * spatial_dims))
    out = task(encoder, x)
    assert seen["student"] == [(8, 1, *([16] * spatial_dims)), (12, 1, *([7] * spatial_dims))]
    assert seen["teacher"] == [(8, 1, *([16] * spatial_dims))]
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert out.features.shape == (4, encoder.feature_dim)
    out.loss.backward()
    assert all(p.grad is not None for p in encoder.parameters())
    assert all(p.grad is None for p in [*task.teacher_encoder.parameters(), *task.teacher_head.parameters()])


def test_teacher_is_the_ema_of_the_student_encoder_and_head():
    encoder, task = _make(momentum=0.9)
    teacher = [*task.teacher_encoder.parameters(), *task.teacher_head.parameters()]
    assert all(not p.requires_grad for p in teacher)
    old = [p.detach().clone() for p in teacher]
    params = [p for p in [*encoder.parameters(), *task.parameters()] if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)
    task(encoder, torch.rand(4, 1, 16, 16)).loss.backward()
    optimizer.step()
    online = [p.detach().clone() for p in [*encoder.parameters(), *task.head.parameters()]]
    task.on_step_end(encoder, 0.25)
    m = 1.0 - (1.0 - 0.9) * (1.0 + math.cos(math.pi * 0.25)) / 2.0
    for p, o, q in zip(teacher, old, online, strict=True):
        assert torch.allclose(p, m * o + (1 - m) * q, atol=1e-6)
    assert any(not torch.equal(p, o) for p, o in zip(teacher, old, strict=True))


def test_centre_moves_towards_the_teacher_mean_in_training_only():
    encoder, task = _make(center_momentum=0.8)
    x = torch.rand(4, 1, 16, 16)
    task.eval()
    task(encoder, x)
    assert torch.equal(task.criterion.center, torch.zeros_like(task.criterion.center))
    task.train()
    teacher_out = []
    task.teacher_head.register_forward_hook(lambda m, a, out: teacher_out.append(out.detach()))
    task(encoder, x)
    expected = 0.2 * teacher_out[0].mean(0)
    assert torch.allclose(task.criterion.center.flatten(), expected, atol=1e-6)


def test_teacher_temperature_warms_up_with_progress_and_resumes_from_the_state_dict():
    encoder, task = _make(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_fraction=0.5)
    assert task.current_teacher_temp() == pytest.approx(0.04)
    task.on_step_end(encoder, 0.25)
    assert task.current_teacher_temp() == pytest.approx(0.055)
    _, restored = _make(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_fraction=0.5)
    restored.load_state_dict(task.state_dict())
    assert restored.current_teacher_temp() == pytest.approx(0.055)
    task.on_step_end(encoder, 0.9)
    assert task.current_teacher_temp() == pytest.approx(0.07)


def test_collapse_monitor_tells_healthy_from_collapsed_outputs():
    k = 8
    distinct = 10.0 * torch.eye(k)  # each image sharply on its own prototype: healthy
    same = 10.0 * torch.eye(k)[[0] * k]  # every image on prototype 0: collapse onto one prototype
    uniform = torch.zeros(k, k)  # collapse to the uniform distribution
    zero = torch.zeros(k)
    healthy = collapse_monitor(distinct, zero, 0.1)
    assert healthy["teacher_entropy"] < 0.01 and healthy["teacher_batch_entropy"] == pytest.approx(math.log(k))
    one = collapse_monitor(same, zero, 0.1)
    assert one["teacher_entropy"] < 0.01 and one["teacher_batch_entropy"] < 0.01
    flat = collapse_monitor(uniform, zero, 0.1)
    assert flat["teacher_entropy"] == pytest.approx(math.log(k)) and flat["teacher_batch_entropy"] == pytest.approx(
        math.log(k))


def test_bad_multi_crop_arguments_are_a_user_error():
    with pytest.raises(MedsslError, match="local_crop_fraction"):
        _make(local_crop_fraction=0.0)


def _dino_rank(rank: int, world: int, port: int, teacher: list, student: list, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    part = slice(rank * 4, (rank + 1) * 4)
    criterion = DINOLoss(16, center_momentum=0.5)
    loss = criterion([t[part] for t in teacher], [s[part] for s in student]).detach().reshape(1)
    dist.all_reduce(loss)  # DDP averages the ranks' gradients, i.e. optimises the mean loss
    if rank == 0:
        torch.save({"loss": loss / world, "center": criterion.center}, out)
    else:
        torch.save({"center": criterion.center}, out + ".1")
    dist.destroy_process_group()


def test_ddp_centre_is_the_global_batch_mean_and_loss_the_single_process_value(tmp_path):
    torch.manual_seed(0)
    teacher = [torch.randn(8, 16) for _ in range(2)]
    student = [torch.randn(8, 16) for _ in range(4)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "dino.pt")
    mp.start_processes(_dino_rank, args=(2, port, teacher, student, out), nprocs=2, join=True, start_method="fork")
    single = DINOLoss(16, center_momentum=0.5)
    loss = single(teacher, student)
    rank0, rank1 = torch.load(out, weights_only=True), torch.load(out + ".1", weights_only=True)
    assert rank0["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    # every rank's centre moved towards the mean of the whole (global) batch, not its own half
    assert torch.allclose(rank0["center"], single.center, atol=1e-6)
    assert torch.allclose(rank1["center"], single.center, atol=1e-6)


# What a CPU user shrinks (and the only changes from the paper's defaults): prototypes, head width, local crops.
CPU_SIZES = {"output_dim": 256, "hidden_dim": 64, "bottleneck_dim": 32, "n_local_crops": 2}


def _teacher_entropies(images: np.ndarray, steps: int, batch: int) -> dict[str, float]:
    """A short run on real data with the schedules of a real run (teacher temperature warm-up, EMA cosine, last
    layer frozen first) and the paper's learning rate, 5e-4 x batch / 256; the monitor's means over the last
    fifth of the steps."""
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec("resnet10", images.ndim - 2, 1, width=0.125))
    task = DINO(encoder, **CPU_SIZES)
    params = [p for p in [*encoder.parameters(), *task.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-4 * batch / 256)
    rng = np.random.default_rng(0)
    logs = []
    for step in range(steps):
        x = to_unit_float(torch.from_numpy(images[rng.choice(len(images), batch, replace=False)]))
        out = task(encoder, x)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        task.on_step_end(encoder, (step + 1) / steps)
        logs.append({key: value.item() for key, value in out.logs.items()})
    last = logs[-max(3, steps // 5):]
    return {key: float(np.mean([row[key] for row in last])) for key in last[0]}


def _assert_no_collapse(entropies: dict[str, float]) -> None:
    log_k = math.log(CPU_SIZES["output_dim"])
    # not collapsed onto a few prototypes: the batch's mean distribution spreads over more than sqrt(K) of them
    assert entropies["teacher_batch_entropy"] > 0.5 * log_k, entropies
    # not collapsed to one distribution for every image (the uniform one, or any other): the prototype the teacher
    # picks depends on the image. Their mutual information, batch entropy - mean per-image entropy, measured
    # 0.30-0.65 nats over seeds 0-2 here, and 0.11 at a 16x too large learning rate (1e-3, 2D), where the teacher
    # was becoming uniform
    assert entropies["teacher_batch_entropy"] - entropies["teacher_entropy"] > 0.2, entropies


@pytest.mark.real_data
def test_teacher_collapses_neither_to_one_prototype_nor_to_uniform_on_breastmnist(breastmnist):
    _assert_no_collapse(_teacher_entropies(load_npz(breastmnist).splits["train"].images, steps=60, batch=32))


@pytest.mark.real_data
def test_teacher_collapses_neither_to_one_prototype_nor_to_uniform_on_adrenal3d(adrenal3d):
    volumes = torch.from_numpy(load_npz(adrenal3d).splits["train"].images).float()
    images = torch.nn.functional.avg_pool3d(volumes, 2).round().to(torch.uint8).numpy()  # 14^3, as in test_methods
    _assert_no_collapse(_teacher_entropies(images, steps=30, batch=16))
