import numpy as np
import torch

from medssl.data.dataset import Split
from medssl.evaluate.corruptions import corruptions_for
from medssl.evaluate.robustness import robustness_csv, robustness_table


def _split(dims: int) -> Split:
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 2
    images = rng.integers(40, 200, (12, 1, *(8,) * dims), dtype=np.uint8)
    images[labels == 1] //= 2  # class 1 is darker
    return Split(images, labels)


def _brightness(x: torch.Tensor) -> torch.Tensor:
    """Class 1 ('dark') gets a high score for low mean intensity: perfect on the clean split."""
    score = 10 * (0.45 - x.flatten(1).mean(1))
    return torch.log_softmax(torch.stack([-score, score], 1).double(), 1)


def _constant(x: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.tensor([[0.3, 0.7]], dtype=torch.float64).expand(x.shape[0], 2))


def test_table_covers_every_corruption_at_five_severities_in_2d_and_3d():
    for dims in (2, 3):
        table = robustness_table(_brightness, _split(dims), dims)
        assert list(table["corruptions"]) == corruptions_for(dims)
        for entry in table["corruptions"].values():
            assert list(entry["severity"]) == ["1", "2", "3", "4", "5"]
        assert table["clean"]["auc"] == 1.0
        assert len(robustness_csv(table).strip().splitlines()) == 2 + 5 * len(corruptions_for(dims))


def test_drop_is_clean_minus_corrupted_and_zero_for_an_image_blind_model():
    table = robustness_table(_constant, _split(2), 2)
    for entry in table["corruptions"].values():
        assert all(r["auc_drop"] == 0 and r["acc_drop"] == 0 for r in entry["severity"].values())
    table = robustness_table(_brightness, _split(2), 2, corruptions=["gamma"])
    gamma = table["corruptions"]["gamma"]["severity"]
    # gamma > 1 darkens every image, so the brightness rule calls more of them 'dark' (class 1)
    assert gamma["5"]["acc"] < table["clean"]["acc"]
    assert gamma["5"]["acc_drop"] == table["clean"]["acc"] - gamma["5"]["acc"]


def test_same_seed_same_table():
    a = robustness_table(_brightness, _split(2), 2, corruptions=["gaussian_noise"], seed=3)
    b = robustness_table(_brightness, _split(2), 2, corruptions=["gaussian_noise"], seed=3)
    assert a == b
