import functools
import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

from jinvert import data
from jinvert.errors import JinvertError
from conftest import idx_bytes, real_data_or_skip, write_tiny_dataset


def test_parse_idx_round_trips_hand_made_file():
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  np.testing.assert_array_equal(data.parse_idx(idx_bytes(array)), array)


def test_parse_idx_rejects_bad_magic():
  raw = bytearray(idx_bytes(np.zeros((2, 2))))
  raw[0] = 7
  with pytest.raises(JinvertError, match="bad magic"):
    data.parse_idx(bytes(raw), "x.idx")


def test_parse_idx_rejects_truncated_and_trailing_bytes():
  raw = idx_bytes(np.zeros((3, 28, 28)))
  with pytest.raises(JinvertError, match="x.idx: IDX file truncated"):
    data.parse_idx(raw[:-1], "x.idx")
  with pytest.raises(JinvertError, match="trailing"):
    data.parse_idx(raw + b"\0", "x.idx")
  with pytest.raises(JinvertError, match="truncated IDX header"):
    data.parse_idx(raw[:6], "x.idx")


def test_load_folder_gzipped_and_raw(tmp_path):
  for gz in (True, False):
    files = write_tiny_dataset(tmp_path / str(gz), gz=gz)
    ds = data.load_folder(tmp_path / str(gz))
    assert ds.train_images.dtype == np.float32 and ds.train_images.shape == (12, 28, 28)
    assert 0.0 <= ds.train_images.min() and ds.train_images.max() <= 1.0
    np.testing.assert_array_equal(ds.test_labels, files["t10k-labels-idx1-ubyte"])
    assert ds.test_labels.dtype == np.int32


def test_corrupt_gzip_names_the_file(tmp_path):
  write_tiny_dataset(tmp_path)
  path = tmp_path / "train-images-idx3-ubyte.gz"
  path.write_bytes(path.read_bytes()[:50])
  with pytest.raises(JinvertError, match="train-images-idx3-ubyte.gz: corrupt or truncated"):
    data.load_folder(tmp_path)


def test_count_mismatch_between_images_and_labels(tmp_path):
  write_tiny_dataset(tmp_path)
  (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(11))))
  with pytest.raises(JinvertError, match="12 images but .* 11 labels"):
    data.load_folder(tmp_path)


def test_lookup_order_explicit_dir_before_env(isolated_env, monkeypatch):
  write_tiny_dataset(isolated_env / "explicit" / "mnist", n_train=5)
  write_tiny_dataset(isolated_env / "env" / "mnist", n_train=7)
  monkeypatch.setenv("JINVERT_DATA", str(isolated_env / "env"))
  assert len(data.load_dataset("mnist").train_images) == 7
  assert len(data.load_dataset("mnist", isolated_env / "explicit").train_images) == 5


def test_nothing_found_offline_says_what_was_tried_and_how_to_fix(isolated_env):
  with pytest.raises(JinvertError) as info:
    data.load_dataset("fashion-mnist", isolated_env / "nowhere")
  message = str(info.value)
  assert "nowhere" in message and "cache" in message and "JINVERT_OFFLINE" in message
  assert "JINVERT_DATA=DIR" in message and "\n" not in message


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


@pytest.fixture
def loopback_server():
  servers = []

  def serve(folder):
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
    return f"http://127.0.0.1:{server.server_address[1]}/"

  yield serve
  for server in servers:
    server.shutdown()


def test_download_from_loopback_mirror_verifies_and_caches(isolated_env, monkeypatch,
                                                           loopback_server):
  shared = real_data_or_skip("mnist")
  monkeypatch.delenv("JINVERT_OFFLINE")
  monkeypatch.setenv("JINVERT_MIRRORS", "http://127.0.0.1:9/," + loopback_server(shared / "mnist"))
  ds = data.load_dataset("mnist")
  assert ds.train_images.shape == (60000, 28, 28) and ds.test_labels.shape == (10000,)
  cached = isolated_env / "cache" / "jinvert" / "mnist" / "t10k-labels-idx1-ubyte.gz"
  assert hashlib.sha256(gzip.decompress(cached.read_bytes())).hexdigest() == \
      data.SHA256["mnist"]["t10k-labels-idx1-ubyte"]


def test_download_checksum_mismatch_writes_nothing(isolated_env, monkeypatch, loopback_server):
  shared = real_data_or_skip("fashion-mnist")
  monkeypatch.delenv("JINVERT_OFFLINE")
  # Fashion-MNIST served where MNIST is expected: same names, other bytes.
  monkeypatch.setenv("JINVERT_MIRRORS", loopback_server(shared / "fashion-mnist"))
  with pytest.raises(JinvertError, match="checksum mismatch .*train-images-idx3-ubyte.gz"):
    data.load_dataset("mnist")
  assert not list((isolated_env / "cache").rglob("*.gz"))


def test_real_mnist_shapes():
  folder = real_data_or_skip("mnist")
  ds = data.load_dataset("mnist", folder)
  assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
  assert set(np.unique(ds.train_labels)) == set(range(10))


@pytest.mark.parametrize("name", ["colored-mnist", "colored-mnist-random"])
def test_colored_mnist_is_derived_deterministically_from_the_mnist_files(tmp_path, name):
  from jinvert import metrics
  files = write_tiny_dataset(tmp_path / "mnist", n_train=40, n_test=20)
  ds = data.load_dataset(name, tmp_path)
  assert ds.train_images.shape == (40, 28, 28, 3) and ds.test_images.shape == (20, 28, 28, 3)
  assert ds.train_images.dtype == np.float32
  np.testing.assert_array_equal(ds.train_labels, files["train-labels-idx1-ubyte"])
  gray = files["train-images-idx3-ubyte"] / 255.0
  # the grey level is each pixel's value (HSV value = max of RGB), at full saturation
  np.testing.assert_allclose(ds.train_images.max(-1), gray, atol=1e-6)
  np.testing.assert_allclose(ds.train_images.min(-1), 0.0, atol=1e-6)
  hues = metrics.mean_hue(ds.train_images)
  if name == "colored-mnist":
    np.testing.assert_allclose(metrics.hue_difference(hues, 36.0 * ds.train_labels), 0, atol=1e-3)
  else:
    assert np.mean(metrics.hue_difference(hues, 36.0 * ds.train_labels) > 18) > 0.5
  again = data.load_dataset(name, tmp_path)
  np.testing.assert_array_equal(again.test_images, ds.test_images)
  assert not list(tmp_path.rglob("*.npy")) and not list(tmp_path.rglob("*.npz"))  # never stored
