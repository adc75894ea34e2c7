import numpy as np
import pytest
import torch

from medssl.errors import MedsslError
from medssl.evaluate.embeddings import embed_data, embed_split, load_embeddings, save_embeddings
from medssl.models.encoder import BackboneSpec, Encoder


def test_batched_embeddings_equal_one_eval_mode_forward(data2d):
    torch.manual_seed(0)
    encoder = Encoder(BackboneSpec("resnet10", 2, 1, 0.125))
    encoder.train()  # embedding must switch BatchNorm to its running statistics
    split = data2d.splits["val"]
    emb = embed_split(encoder, split, "val", batch_size=3)
    with torch.no_grad():
        expected = encoder.eval()(torch.from_numpy(split.images).float() / 255).numpy()
    np.testing.assert_allclose(emb.features, expected, rtol=1e-4, atol=1e-5)
    assert emb.features.dtype == np.float32 and emb.ids.tolist() == list(range(len(split)))
    assert np.array_equal(emb.labels, split.labels)


def test_embeddings_round_trip_through_npz(data2d, tmp_path):
    torch.manual_seed(0)
    emb = embed_data(Encoder(BackboneSpec("resnet10", 2, 1, 0.125)), data2d)
    path = save_embeddings(tmp_path / "e.npz", emb)
    back = load_embeddings(path)
    assert set(back) == {"train", "val", "test"}
    for name, e in emb.items():
        np.testing.assert_array_equal(back[name].features, e.features)
        np.testing.assert_array_equal(back[name].labels, e.labels)
        np.testing.assert_array_equal(back[name].ids, e.ids)
    assert [p.name for p in tmp_path.iterdir()] == ["e.npz"]  # no temporary file left behind


def test_bad_embedding_files_are_user_errors(tmp_path):
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(MedsslError, match="not a readable"):
        load_embeddings(tmp_path / "bad.npz")
    with pytest.raises(MedsslError, match="not found"):
        load_embeddings(tmp_path / "missing.npz")
    with pytest.raises(MedsslError, match=r"\.npz"):
        save_embeddings(tmp_path / "e.txt", {})
