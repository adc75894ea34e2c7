"""Every registered method trains: its loss falls on real data (BreastMNIST 2D, AdrenalMNIST3D 3D)."""

import numpy as np
import pytest
import torch

from medssl.data.npz import load_npz
from medssl.methods.base import Pretrainer, to_unit_float
from medssl.methods.registry import list_methods, parse_method
from medssl.models.encoder import BackboneSpec, Encoder

# Methods whose loss moves slowly at these tiny batches get a longer run and need only fall by 1 %: two-view
# contrastive losses are noisy at batch 16 in 3D, and VICReg's variance term stays nearly constant while
# invariance is learnt. The first steps of some losses are a start-up transient, not learning, and are left out:
# while MoCo's queue fills, the number of negatives (and with it the chance-level loss, log(1 + negatives)) grows;
# DINO's centre starts at zero, so the first teachers are sharp on the prototypes every image shares (which the
# identical student matches: a low loss) until the centre's EMA (momentum 0.9) has removed them, three time
# constants (30 steps) later. DINO keeps the paper's defaults but the sizes a CPU user shrinks (prototypes, head
# width, local crops) and takes the paper's learning rate, 5e-4 x batch / 256 (AdamW); at the 3e-3 used here for
# the others its teacher collapsed to the uniform distribution within 60 steps (measured). A loss sinking to
# log(prototypes) can be that collapse: test_contrastive_dino.py checks the teacher's entropies on the same data.
SLOW = {"vicreg": {}, "simclr": {}, "moco": {"queue_size": 64},
        "dino": {"output_dim": 256, "hidden_dim": 64, "bottleneck_dim": 32, "n_local_crops": 2}}
TRANSIENT_STEPS = {"moco": 2, "dino": 30}
LR = {"dino": lambda batch: 5e-4 * batch / 256}
SLOW_STEPS, SLOW_FALL = 3, 0.99


def _train_losses(method: str, images: np.ndarray, steps: int, batch: int = 32) -> list[float]:
    torch.manual_seed(0)
    [(cls, _)] = parse_method(method)
    spatial_dims = images.ndim - 2
    encoder = Encoder(BackboneSpec("resnet10", spatial_dims, images.shape[1], width=0.125))
    task = cls(encoder, **SLOW.get(method, {}))
    steps = steps * SLOW_STEPS if method in SLOW else steps
    params = list(encoder.parameters()) + list(task.parameters())
    optimizer = torch.optim.AdamW(params, lr=LR[method](batch) if method in LR else 3e-3)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        x = to_unit_float(torch.from_numpy(images[rng.choice(len(images), batch, replace=False)]))
        loss = task(encoder, x).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        task.on_step_end(encoder, 0.5)
        losses.append(loss.item())
    return losses


def _assert_falls(losses: list[float], method: str) -> None:
    losses = losses[TRANSIENT_STEPS.get(method, 0):]
    k = max(3, len(losses) // 5)
    first, last = np.mean(losses[:k]), np.mean(losses[-k:])
    factor = SLOW_FALL if method in SLOW else 0.95
    assert last < factor * first, f"loss did not fall: first {first:.4f} -> last {last:.4f}"


@pytest.mark.real_data
@pytest.mark.parametrize("method", [name for name, _, dims in list_methods() if 2 in dims])
def test_method_loss_falls_on_breastmnist(method, breastmnist):
    images = load_npz(breastmnist).splits["train"].images
    _assert_falls(_train_losses(method, images, steps=60), method)


@pytest.mark.real_data
@pytest.mark.parametrize("method", [name for name, _, dims in list_methods() if 3 in dims])
def test_method_loss_falls_on_adrenal3d(method, adrenal3d):
    volumes = torch.from_numpy(load_npz(adrenal3d).splits["train"].images).float()
    # 2x average pooling to 14^3 keeps the test fast and, unlike striding, keeps the thin gland visible
    images = torch.nn.functional.avg_pool3d(volumes, 2).round().to(torch.uint8).numpy()
    _assert_falls(_train_losses(method, images, steps=30, batch=16), method)


def test_combined_methods_log_each_component_loss():
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, width=0.125))
    tasks = [cls(encoder) for cls, _ in parse_method("rotation+simclr")]
    model = Pretrainer(encoder, tasks, [1.0, 0.5], num_classes=2)
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    images = torch.randint(0, 255, (8, 1, 16, 16), dtype=torch.uint8)
    labels = torch.tensor([0, 1, -1, -1, 0, 1, 0, 1])
    total = model.training_step((images, labels), 0)
    assert {"train/rotation_loss", "train/simclr_loss", "train/loss", "train/probe_acc"} <= set(logged)
    weighted = logged["train/rotation_loss"] + 0.5 * logged["train/simclr_loss"]
    assert logged["train/loss"] == pytest.approx(weighted, rel=1e-5)
    assert total.item() > logged["train/loss"]  # the probe's loss is added but does not reach the encoder


def test_probe_gradients_never_reach_the_encoder():
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, width=0.125))
    model = Pretrainer(encoder, [], [], num_classes=2)
    model.log = lambda *a, **k: None
    features = encoder(torch.rand(4, 1, 16, 16))
    model._probe_loss(features, torch.tensor([0, 1, 0, -1])).backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert model.probe.weight.grad is not None


def test_unknown_or_badly_weighted_methods_are_rejected():
    from medssl.errors import MedsslError

    with pytest.raises(MedsslError, match="unknown method 'nope'"):
        parse_method("simclr+nope")
    with pytest.raises(MedsslError, match="2 weights given for 1"):
        parse_method("simclr", [1, 2])
    with pytest.raises(MedsslError, match="twice"):
        parse_method("simclr+simclr")
