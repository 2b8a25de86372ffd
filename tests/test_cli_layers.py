"""`jinvert layers` and the command line's convolutional objectives: --objective channel and
neuron, --layer, --diversity, on checkpoints and ONNX files alike."""

import json

import numpy as np
import pytest

from contract import assert_refused, run, save

onnx = pytest.importorskip("onnx")
from test_cli_onnx import colour_cnn  # noqa: E402


@pytest.fixture
def work(tmp_path, monkeypatch, isolated_env):
  monkeypatch.chdir(tmp_path)
  save(tmp_path / "cnn.msgpack", "mnist-cnn", dataset="mnist")
  (tmp_path / "c.onnx").write_bytes(colour_cnn().SerializeToString())
  return tmp_path


def layers_of(capsys, model):
  code, out, err = run(capsys, "layers", model)
  assert code == 0, err
  return json.loads(out.splitlines()[-1])["layers"], out


def test_layers_of_a_checkpoint(work, capsys):
  layers, table = layers_of(capsys, "cnn.msgpack")
  from jinvert import models
  flax_shapes = {"block1": [28, 28, 16], "block1_pre": [28, 28, 16], "block2": [14, 14, 32],
                 "block2_pre": [14, 14, 32]}
  found = {layer["name"]: layer for layer in layers}
  assert set(found) == set(models.get_model("mnist-cnn").layers)
  for name, shape in flax_shapes.items():
    assert found[name]["shape"] == shape and found[name]["channels"] == shape[-1]
    assert name in table
  dense = [layer for layer in layers if len(layer["shape"]) == 1]
  assert dense and all(layer["channels"] == layer["shape"][0] for layer in dense)


def test_layers_of_an_onnx_file(work, capsys):
  layers, _ = layers_of(capsys, "c.onnx")
  found = {layer["name"]: layer for layer in layers}
  assert found["c"]["shape"] == [10, 32, 32] and found["c"]["channels"] == 10  # NCHW: axis 0
  assert found["p"]["shape"] == [10, 16, 16]
  assert found["f"]["shape"] == [10] and found["f"]["channels"] == 10


@pytest.mark.parametrize("model,layer,channels", [("cnn.msgpack", "block1", 16),
                                                  ("c.onnx", "c", 10)])
def test_every_channel_in_one_call(work, capsys, model, layer, channels):
  code, out, err = run(capsys, "invert", model, "--objective", "channel", "--layer", layer,
                       "--restarts", "2", "--steps", "10", "--preset", "data-free",
                       "--out", "ch.npz")
  assert code == 0, err
  summary = json.loads(out.splitlines()[-1])
  assert summary["targets"] == list(range(channels)) and summary["chunks"] == 1
  assert summary["objective"].startswith(f"channel({layer!r}")
  with np.load("ch.npz") as f:
    assert f["images"].shape[:2] == (channels, 2)


def test_diversity_runs_the_restarts_together(work, capsys):
  code, out, err = run(capsys, "invert", "cnn.msgpack", "--objective", "neuron", "--layer",
                       "block2", "--targets", "0-3", "--diversity", "1", "--restarts", "3",
                       "--steps", "5", "--preset", "data-free", "--out", "d.npz")
  assert code == 0, err
  summary = json.loads(out.splitlines()[-1])
  assert summary["objective"] == "neuron('block2') + 1*diversity('block2')"


@pytest.mark.parametrize("model,argv,fragments", [
    ("cnn.msgpack", ["--objective", "channel", "--layer", "conv9"],
     ["no layer 'conv9'", "block1", "block2"]),
    ("cnn.msgpack", ["--objective", "channel", "--layer", "hidden1"],
     ["layer 'hidden1' is dense",
      "block1_pre, block1_conv, block1, block2_pre, block2_conv, block2"]),
    ("cnn.msgpack", ["--objective", "neuron", "--layer", "block1", "--targets", "16"],
     ["target 16 is outside", "16 channels of 'block1'"]),
    ("c.onnx", ["--objective", "channel", "--layer", "nope"], ["no layer 'nope'", "valid layer names: xc, c, r, p, g, f, z"]),
    ("c.onnx", ["--objective", "channel", "--layer", "f"], ["layer 'f' is dense", "read feature maps: xc, c, r, p, g"]),
    ("c.onnx", ["--objective", "channel", "--layer", "c", "--targets", "3,10"],
     ["target 10 is outside", "10 channels of 'c'"]),
    ("cnn.msgpack", ["--diversity", "1", "--layer", "conv9"], ["--diversity", "no layer 'conv9'"]),
])
def test_bad_layer_or_channel_is_refused_naming_what_exists(work, capsys, model, argv, fragments):
  assert_refused(capsys, work, ["invert", model, *argv, "--out", "x.npz"], *fragments)


def test_layers_of_a_bad_file_is_refused(work, capsys):
  (work / "junk.onnx").write_bytes(b"junk")
  assert_refused(capsys, work, ["layers", "junk.onnx"], "junk.onnx: not a valid ONNX model")
  assert_refused(capsys, work, ["layers", "missing.msgpack"], "missing.msgpack")


def test_colour_class_images_read_no_data(work, capsys, monkeypatch):
  """A color-cnn of colored-mnist gets the colour data-free preset by default, and draws with
  JINVERT_DATA empty, the cache empty, offline, and any dataset read an error."""
  (work / "empty").mkdir()
  monkeypatch.setenv("JINVERT_DATA", str(work / "empty"))

  def refuse(*args, **kwargs):
    raise AssertionError("a dataset was read")

  monkeypatch.setattr("jinvert.data.load_dataset", refuse)
  monkeypatch.setattr("jinvert.data.load_files", refuse)
  save(work / "cc.msgpack", "color-cnn", dataset="colored-mnist")
  code, out, err = run(capsys, "invert", "cc.msgpack", "--targets", "0-2", "--restarts", "2",
                       "--steps", "5", "--out", "cc.npz", "--png", "cc.png")
  assert code == 0, err
  summary = json.loads(out.splitlines()[-1])
  assert summary["preset"] == "data-free"
  with np.load("cc.npz") as f:
    assert f["images"].shape == (3, 2, 28, 28, 3)
  assert not list((work / "cache").rglob("jinvert"))  # nothing cached, nothing downloaded


def test_channels_default_to_the_models_first_feature_map(work, capsys):
  code, out, err = run(capsys, "invert", "cnn.msgpack", "--objective", "channel", "--restarts",
                       "1", "--steps", "2", "--preset", "data-free", "--out", "d.npz")
  assert code == 0, err
  summary = json.loads(out.splitlines()[-1])
  assert summary["objective"] == "channel('block1_pre')" and summary["targets"] == list(range(16))


def test_data_free_uses_the_batchnorm_prior_of_a_batchnorm_model(work, capsys):
  code, out, err = run(capsys, "invert", "cnn.msgpack", "--preset", "data-free", "--targets",
                       "0-1", "--restarts", "2", "--steps", "3", "--out", "bn.npz")
  assert code == 0, err
  assert "batchnorm_statistics(2 layers" in json.loads(out.splitlines()[-1])["objective"]
  code, out, err = run(capsys, "invert", "c.onnx", "--preset", "data-free", "--targets", "0-1",
                       "--restarts", "2", "--steps", "3", "--out", "nobn.npz")
  assert code == 0, err
  assert "batchnorm" not in json.loads(out.splitlines()[-1])["objective"]


@pytest.mark.parametrize("argv,fragments", [
    (["invert", "mlp.msgpack", "--batchnorm-prior", "1"],
     ["--batchnorm-prior: MODEL mlp.msgpack has no BatchNorm layers"]),
    (["invert", "c.onnx", "--batchnorm-prior", "0.5"],
     ["--batchnorm-prior: MODEL c.onnx has no BatchNorm layers", "folds them"]),
    (["invert", "cnn.msgpack", "--batchnorm-prior", "-1"], ["--batchnorm-prior must be 0 or more"]),
    (["distill", "mlp.msgpack", "--student", "mnist-mlp", "--images", "20",
      "--batchnorm-prior", "1"], ["--batchnorm-prior: TEACHER mlp.msgpack has no BatchNorm"]),
])
def test_the_batchnorm_prior_asked_of_a_model_without_batchnorm_is_refused(work, capsys, argv,
                                                                          fragments):
  save(work / "mlp.msgpack", "mnist-mlp", dataset="mnist")
  assert_refused(capsys, work, [*argv, "--out", "x.npz" if argv[0] == "invert" else "s.msgpack"],
                 *fragments)


def test_the_batchnorm_prior_can_be_turned_off(work, capsys):
  code, out, err = run(capsys, "invert", "cnn.msgpack", "--preset", "data-free",
                       "--batchnorm-prior", "0", "--targets", "0", "--restarts", "1", "--steps",
                       "2", "--out", "off.npz")
  assert code == 0, err
  assert "batchnorm" not in json.loads(out.splitlines()[-1])["objective"]
