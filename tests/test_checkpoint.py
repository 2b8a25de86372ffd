import jax
import numpy as np
import pytest

from jinvert import checkpoint, models
from jinvert.errors import JinvertError


def _params(name="mnist-mlp", seed=0):
  return models.get_model(name).init_params(jax.random.key(seed))


def test_round_trip_is_bit_exact(tmp_path):
  params = _params()
  meta = {"model": "mnist-mlp", "init": "glorot", "test_accuracy": 0.5, "recipe": {"lr": 1e-3}}
  checkpoint.save_checkpoint(tmp_path / "a.msgpack", params, meta)
  loaded, loaded_meta = checkpoint.load_checkpoint(tmp_path / "a.msgpack")
  assert loaded_meta == meta
  flat_a, flat_b = jax.tree.leaves(params), jax.tree.leaves(loaded)
  assert len(flat_a) == len(flat_b)
  for a, b in zip(flat_a, flat_b):
    assert np.asarray(a).dtype == b.dtype
    np.testing.assert_array_equal(a, b)


def test_checkpoint_of_another_model_is_rejected(tmp_path):
  checkpoint.save_checkpoint(tmp_path / "r.msgpack", _params("r2rt-mlp"), {"model": "r2rt-mlp"})
  with pytest.raises(JinvertError, match="checkpoint of model 'r2rt-mlp', expected 'mnist-mlp'"):
    checkpoint.load_checkpoint(tmp_path / "r.msgpack", expect_model="mnist-mlp")


def test_wrong_shape_names_the_array(tmp_path):
  # r2rt-mlp's params labelled as mnist-mlp: every layer differs in width
  checkpoint.save_checkpoint(tmp_path / "bad.msgpack", _params("r2rt-mlp"), {"model": "mnist-mlp"})
  with pytest.raises(JinvertError, match=r"params/dense1/kernel has shape \(784, 100\).*needs \(784, 256\)"):
    checkpoint.load_checkpoint(tmp_path / "bad.msgpack")


def test_truncated_and_foreign_files_are_rejected(tmp_path):
  path = checkpoint.save_checkpoint(tmp_path / "a.msgpack", _params(), {"model": "mnist-mlp"})
  path.write_bytes(path.read_bytes()[:1000])
  with pytest.raises(JinvertError, match="not a readable jinvert checkpoint"):
    checkpoint.load_checkpoint(path)
  other = tmp_path / "other.msgpack"
  other.write_bytes(b"\x81\xa1a\x01")  # msgpack {"a": 1}
  with pytest.raises(JinvertError, match="not a jinvert checkpoint"):
    checkpoint.load_checkpoint(other)
  with pytest.raises(JinvertError, match="no such checkpoint"):
    checkpoint.load_checkpoint(tmp_path / "missing.msgpack")


def test_atomic_write_leaves_no_temporary_files(tmp_path):
  checkpoint.save_checkpoint(tmp_path / "a.msgpack", _params(), {"model": "mnist-mlp"})
  assert [p.name for p in tmp_path.iterdir()] == ["a.msgpack"]
