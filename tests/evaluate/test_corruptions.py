import itertools

import pytest
import torch

from medssl.errors import MedsslError
from medssl.evaluate.corruptions import CORRUPTIONS, SEVERITIES, corrupt, corruptions_for


def _image(dims: int) -> torch.Tensor:
    """Two textured grey images in [0.15, 0.85] (room to move both ways)."""
    g = torch.Generator().manual_seed(0)
    size = 24 if dims == 2 else 12
    return 0.15 + 0.7 * torch.rand((2, 1, *(size,) * dims), generator=g)


CASES = [(name, dims) for dims in (2, 3) for name in corruptions_for(dims)]


@pytest.mark.parametrize(("name", "dims"), CASES)
def test_corruption_keeps_shape_dtype_and_range_and_changes_the_image(name, dims):
    x = _image(dims)
    y = corrupt(x, name, 3, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert (y - x).abs().mean() > 1e-3


@pytest.mark.parametrize(("name", "dims"), CASES)
def test_higher_severity_moves_further_from_the_clean_image(name, dims):
    x = _image(dims)
    distances = [float((corrupt(x, name, s, torch.Generator().manual_seed(0)) - x).pow(2).mean().sqrt())
                 for s in SEVERITIES]
    assert all(b > a for a, b in itertools.pairwise(distances)), distances


@pytest.mark.parametrize("name", ["gaussian_noise", "bias_field"])
def test_random_corruptions_are_fixed_by_the_seed(name):
    x = _image(2)
    a = corrupt(x, name, 2, torch.Generator().manual_seed(5))
    b = corrupt(x, name, 2, torch.Generator().manual_seed(5))
    c = corrupt(x, name, 2, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_every_corruption_applies_to_2d_and_all_but_jpeg_to_3d():
    assert corruptions_for(2) == list(CORRUPTIONS)
    assert corruptions_for(3) == [n for n in CORRUPTIONS if n != "jpeg"]
    with pytest.raises(MedsslError, match="does not apply to 3D"):
        corrupt(_image(3), "jpeg", 1)


def test_ghosting_adds_copies_shifted_by_a_quarter_of_the_image_along_one_axis():
    x = torch.full((1, 1, 16, 16), 0.5)
    x[0, 0, 8, 8] = 1.0  # a bright point: ghosts every 16 / 4 = 4 px along the last (phase-encoding) axis
    y = corrupt(x, "ghosting", 5)[0, 0]
    ghosts, between = y[8, [0, 4, 12]], y[8, [2, 6, 10, 14]]
    assert float((ghosts - between.mean()).abs().min()) > 0.1
    assert float((between - between.mean()).abs().max()) < 1e-6
    others = torch.cat([y[:8], y[9:]])
    assert torch.allclose(others, torch.full_like(others, 0.5), atol=1e-6)  # no ghosts along the other axis


@pytest.mark.parametrize(("name", "severity", "match"), [("fog", 1, "unknown corruption"),
                                                         ("gamma", 0, "severity"), ("gamma", 6, "severity")])
def test_bad_names_and_severities_are_user_errors(name, severity, match):
    with pytest.raises(MedsslError, match=match):
        corrupt(_image(2), name, severity)
