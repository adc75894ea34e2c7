"""Method hyperparameters: validated against each constructor (view recipe included), coerced, and effective."""

import pytest
import torch

from medssl.errors import MedsslError
from medssl.methods.registry import method_kwargs, method_parameters, parse_method, recorded_method_args
from medssl.models.encoder import BackboneSpec, Encoder


def _simclr_loss(**args) -> float:
    task_classes = parse_method("simclr")
    [kwargs] = method_kwargs(task_classes, args)
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, width=0.125))
    task = task_classes[0][0](encoder, **kwargs)
    torch.manual_seed(1)  # the same views for every call
    return task(encoder, torch.rand(6, 1, 16, 16)).loss.item()


def test_a_changed_temperature_changes_the_loss_on_the_same_batch():
    default = _simclr_loss()
    assert _simclr_loss(temperature="0.2") == pytest.approx(default, rel=1e-6)  # 0.2 is the default
    assert _simclr_loss(temperature="0.5") != pytest.approx(default, rel=1e-3)


def test_view_recipe_arguments_reach_the_view():
    task_classes = parse_method("moco")
    [kwargs] = method_kwargs(task_classes, {"crop_scale": "[0.2, 0.9]", "blur_p": "1", "queue_size": "32"})
    assert kwargs == {"crop_scale": (0.2, 0.9), "blur_p": 1.0, "queue_size": 32}
    task = task_classes[0][0](Encoder(BackboneSpec("resnet10", 2, 1, width=0.125)), **kwargs)
    crop, *_, blur, _noise = task.view.ops
    assert crop.keywords["scale"] == (0.2, 0.9) and blur.keywords["p"] == 1.0
    assert task.queue.size == 32


def test_every_method_lists_its_constructor_arguments_with_types():
    import medssl.methods.all  # noqa: F401
    from medssl.methods.registry import METHODS

    assert set(method_parameters(METHODS["spark"])) == {"mask_ratio", "decoder_width"}
    simclr = method_parameters(METHODS["simclr"])
    assert simclr["temperature"] == (float, 0.2) and simclr["crop_scale"][1] == (0.4, 1.0)
    assert "size" not in simclr  # set by methods themselves (multi-crop), never by users


def test_values_are_coerced_to_the_annotated_types_and_recorded_as_plain_values():
    jigsaw = parse_method("jigsaw")
    assert method_kwargs(jigsaw, {"n_perms": 10.0, "hidden_dim": "null"}) == [{"n_perms": 10, "hidden_dim": None}]
    dino = parse_method("dino")
    assert recorded_method_args(dino, {"head_batch_norm": "false", "local_crop_scale": (0.1, 0.3)}) == {
        "head_batch_norm": False, "local_crop_scale": [0.1, 0.3]}


@pytest.mark.parametrize(("args", "message"), [
    ({"tempature": 0.3}, "unknown method argument 'tempature' (simclr: blur_p, blur_sigma, crop_scale"),
    ({"temperature": "warm"}, "simclr argument 'temperature' must be float"),
    ({"projection_dim": 1.5}, "must be a whole number"),
    ({"crop_scale": 0.3}, "must be 2 values in brackets"),
    ({"rotation.temperature": 0.3}, "names method 'rotation', which is not in simclr"),
])
def test_bad_arguments_are_one_line_user_errors(args, message):
    with pytest.raises(MedsslError, match=None) as err:
        method_kwargs(parse_method("simclr"), args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_combined_methods_take_plain_keys_for_every_task_and_prefixed_keys_for_one():
    task_classes = parse_method("simclr+moco")
    assert method_kwargs(task_classes, {"temperature": 0.3, "moco.queue_size": 8}) == [
        {"temperature": 0.3}, {"temperature": 0.3, "queue_size": 8}]
    assert method_kwargs(task_classes, {"simclr.temperature": 0.3}) == [{"temperature": 0.3}, {}]
