import numpy as np

from medssl.evaluate.maps import embedding_map


def test_map_keeps_separated_classes_apart_and_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    features = rng.normal(0, 0.05, (40, 16))
    features[labels == 0, 0] += 1
    features[labels == 1, 1] += 1
    coords = embedding_map(features, labels, tmp_path / "map.png", class_names=["a", "b"])
    assert coords.shape == (40, 2)
    # in the 2D map each point's nearest other point still shares its class
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(1)] == labels).all()
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
