"""MoCo v2: the key queue is first-in-first-out and persistent; the InfoNCE loss on hand-made keys."""

import math

import pytest
import torch
import torch.nn.functional as F

from medssl.methods.contrastive.moco import info_nce
from medssl.methods.contrastive.queue import KeyQueue
from medssl.methods.registry import parse_method
from medssl.models.encoder import BackboneSpec, Encoder


def test_queue_starts_empty_and_replaces_its_oldest_keys_first():
    queue = KeyQueue(size=5, dim=2)
    assert queue.negatives().shape == (0, 2)
    keys = torch.arange(16, dtype=torch.float32).reshape(8, 2)
    queue.push(keys[:3])
    assert torch.equal(queue.negatives(), keys[:3])
    queue.push(keys[3:7])  # 7 keys into 5 slots: keys 0 and 1 are overwritten by 5 and 6
    assert queue.filled == 5
    assert torch.equal(queue.negatives(), torch.stack([keys[5], keys[6], keys[2], keys[3], keys[4]]))
    queue.push(keys)  # more keys than slots: only the newest five are kept
    assert sorted(queue.negatives()[:, 0].tolist()) == [6.0, 8.0, 10.0, 12.0, 14.0]


def test_queue_contents_are_saved_with_the_model_and_handed_out_as_copies():
    queue = KeyQueue(size=4, dim=3)
    queue.push(torch.ones(2, 3))
    state = queue.state_dict()
    assert set(state) == {"keys", "counters"}
    restored = KeyQueue(size=4, dim=3)
    restored.load_state_dict(state)
    assert torch.equal(restored.negatives(), torch.ones(2, 3))
    negatives = restored.negatives()
    restored.push(torch.zeros(4, 3))
    assert torch.equal(negatives, torch.ones(2, 3))


def test_info_nce_matches_the_hand_computed_value():
    temperature = 0.5
    queries = torch.eye(4)[:2]  # two orthonormal queries whose keys equal them
    queued = torch.eye(4)[2:]  # two queued keys, orthogonal to both queries
    loss = info_nce(queries, queries.clone(), queued, temperature)
    # each query: positive logit 1/T, three negatives (other batch key, two queued) at logit 0
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 3))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_training_steps_enqueue_both_views_keys_and_evaluation_does_not(spatial_dims):
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec("resnet10", spatial_dims, 1, width=0.125))
    [(cls, _)] = parse_method("moco")
    task = cls(encoder, queue_size=16)
    x = torch.rand(3, 1, *([16] * spatial_dims))
    task(encoder, x)
    assert task.queue.filled == 6
    keys = task.queue.negatives()
    assert torch.allclose(keys.norm(dim=1), torch.ones(6), atol=1e-5)
    task.eval()
    task(encoder, x)
    assert task.queue.filled == 6


def test_first_step_with_an_empty_queue_contrasts_against_the_batch():
    torch.manual_seed(0)
    queries = F.normalize(torch.randn(4, 8), dim=1)
    keys = F.normalize(torch.randn(4, 8), dim=1)
    logits = queries @ keys.T / 0.2
    expected = F.cross_entropy(logits, torch.arange(4))
    assert info_nce(queries, keys, torch.zeros(0, 8), 0.2).item() == pytest.approx(expected.item(), rel=1e-6)
