import pytest
import torch

from medssl.errors import MedsslError
from medssl.evaluate.checkpoints import load_classifier, load_encoder
from medssl.models.encoder import Encoder
from medssl.runio import load_state, read_yaml
from medssl.tasks.classify.module import Classifier

from .conftest import fake_finetune_run, fake_pretrain_run


def test_classifier_from_a_finetune_run_gives_the_fine_tuned_logits(data2d, tmp_path):
    run = fake_finetune_run(tmp_path / "ft", 2)
    reference = Classifier(Encoder(load_encoder(run, data2d).spec), 2)
    reference.load_state_dict(load_state(run / "classifier.pt"))
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(load_classifier(run, data2d)(x), reference.eval()(x), atol=1e-6)


def test_encoders_load_from_pretrain_runs_and_random_init_is_seeded(data2d, tmp_path):
    run = fake_pretrain_run(tmp_path / "pre", 2)
    encoder = load_encoder(run, data2d)
    assert not encoder.training
    assert torch.equal(encoder.net.conv1.weight, load_state(run / "encoder.pt")["conv1.weight"])
    a = load_encoder("random", data2d, backbone="resnet10", width=0.125, seed=3)
    b = load_encoder("random", data2d, backbone="resnet10", width=0.125, seed=3)
    assert torch.equal(a.net.conv1.weight, b.net.conv1.weight)
    assert read_yaml(run / "config.yaml")["backbone_spec"]["spatial_dims"] == 2


def test_wrong_checkpoints_are_user_errors(data2d, tmp_path):
    with pytest.raises(MedsslError, match="not found"):
        load_encoder(tmp_path / "nowhere", data2d)
    with pytest.raises(MedsslError, match="is 3D but the data is 2D"):
        load_encoder(fake_pretrain_run(tmp_path / "pre3d", 3), data2d)
    with pytest.raises(MedsslError, match="not a fine-tuning run"):
        load_classifier(fake_pretrain_run(tmp_path / "pre", 2), data2d)
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(MedsslError, match="not a finished run"):
        load_encoder(tmp_path / "unfinished", data2d)
