"""Loaders whose order is a pure function of (seed, epoch), shard by DDP rank, and resume mid-epoch; RNG
states that survive a weights-only checkpoint."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from medssl import training
from medssl.data.dataset import Split
from medssl.errors import MedsslError
from medssl.training import EpochBatchSampler, _rng_state, _set_rng_state, batch_loader


def _epoch(sampler: EpochBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a = EpochBatchSampler(50, 8, shuffle=True, seed=3, drop_last=True)
    b = EpochBatchSampler(50, 8, shuffle=True, seed=3, drop_last=True)
    epochs_a = [_epoch(a, e) for e in range(3)]
    assert _epoch(b, 2) == epochs_a[2]  # a fresh sampler jumps straight to epoch 2 (resume)
    assert epochs_a[0] != epochs_a[1] != epochs_a[2]
    assert _epoch(EpochBatchSampler(50, 8, shuffle=True, seed=4, drop_last=True), 0) != epochs_a[0]


def test_an_epoch_covers_every_sample_once_and_min_samples_adds_passes():
    sampler = EpochBatchSampler(10, 4, shuffle=True, seed=0, num_samples=26)
    batches = _epoch(sampler, 0)
    flat = [i for b in batches for i in b]
    assert len(batches) == len(sampler) == 7 and len(flat) == 26
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))


def test_start_batch_skips_the_consumed_batches_once():
    sampler = EpochBatchSampler(40, 8, shuffle=True, seed=1)
    full = _epoch(sampler, 5)
    sampler.start_batch = 3
    assert list(sampler) == full[3:]
    assert list(sampler) == full  # only the next iteration is shortened


@pytest.mark.parametrize("world", [2, 4])
def test_ranks_get_disjoint_slices_that_make_up_the_global_batch(monkeypatch, world):
    sampler = EpochBatchSampler(64, 16, shuffle=True, seed=0, drop_last=True)
    single = _epoch(sampler, 1)
    per_rank = []
    for rank in range(world):
        monkeypatch.setattr(training, "rank_and_world", lambda rank=rank: (rank, world))
        per_rank.append(_epoch(sampler, 1))
        assert len(sampler) == len(single)
    for b, batch in enumerate(single):
        parts = [per_rank[r][b] for r in range(world)]
        assert all(len(p) == 16 // world for p in parts)
        assert [i for p in parts for i in p] == batch


def test_global_batch_not_divisible_by_the_processes_is_an_error(monkeypatch):
    monkeypatch.setattr(training, "rank_and_world", lambda: (0, 3))
    with pytest.raises(MedsslError, match="divisible"):
        list(EpochBatchSampler(64, 16, shuffle=True))


def test_evaluation_loaders_are_not_sharded(monkeypatch):
    monkeypatch.setattr(training, "rank_and_world", lambda: (1, 2))
    split = Split(np.zeros((10, 1, 4, 4), np.uint8), np.zeros(10, np.int64))
    assert sum(len(y) for _, y in batch_loader(split, 4, shuffle=False)) == 10
    assert sum(len(y) for _, y in batch_loader(split, 4, shuffle=True)) == 4  # the 1 + 1 trailing pair is dropped


def test_creating_a_loader_iterator_does_not_touch_the_global_rng():
    split = Split(np.zeros((10, 1, 4, 4), np.uint8), np.zeros(10, np.int64))
    loader = batch_loader(split, 4, shuffle=True)
    torch.manual_seed(0)
    iter(loader)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


def test_rng_states_round_trip_through_a_weights_only_checkpoint():
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    buffer = io.BytesIO()
    torch.save(_rng_state(), buffer)
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    buffer.seek(0)
    _set_rng_state(torch.load(buffer, weights_only=True))
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(4), expected[1])
    assert [random.random() for _ in range(4)] == expected[2]


def test_a_trailing_training_batch_of_one_is_dropped_but_evaluation_keeps_every_sample():
    assert [len(b) for b in EpochBatchSampler(9, 4, shuffle=True)] == [4, 4]
    assert [len(b) for b in EpochBatchSampler(10, 4, shuffle=True)] == [4, 4, 2]
    assert [len(b) for b in EpochBatchSampler(9, 4, shuffle=False)] == [4, 4, 1]
