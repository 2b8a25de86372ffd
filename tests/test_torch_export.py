"""What torch 2.13's default exporter writes (`torch.onnx.export(..., dynamo=True)`: the graph
and a `.onnx.data` file of weights beside it) is inverted and distilled from another folder,
and its BatchNorm nodes, kept or folded, decide the BatchNorm prior."""

import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")  # torch's dynamo exporter writes ONNX through it

from jinvert import checkpoint, classifiers  # noqa: E402
from contract import assert_refused, run  # noqa: E402


def _bn_lenet():
  """A LeNet with BatchNorm after each convolution, its running statistics made non-trivial."""
  torch.manual_seed(0)
  model = torch.nn.Sequential(
      torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
      torch.nn.MaxPool2d(2), torch.nn.Conv2d(6, 16, 5), torch.nn.BatchNorm2d(16),
      torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(400, 120),
      torch.nn.ReLU(), torch.nn.Linear(120, 10))
  with torch.no_grad():
    for bn in (model[1], model[5]):
      bn.running_mean.uniform_(-0.5, 0.5)
      bn.running_var.uniform_(0.5, 2.0)
  return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """model/lenet_bn.onnx (BatchNorm nodes kept: optimize=False) and model/lenet.onnx (torch's
  default optimisation folds them into the convolutions), each with its .onnx.data."""
  folder = tmp_path_factory.mktemp("export") / "model"
  folder.mkdir()
  model = _bn_lenet()
  for name, optimize in (("lenet_bn.onnx", False), ("lenet.onnx", True)):
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(folder / name), dynamo=True,
                      external_data=True, optimize=optimize, verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert (folder / (name + ".data")).is_file()
  return folder, model


@pytest.fixture
def elsewhere(exported, tmp_path, monkeypatch, isolated_env):
  monkeypatch.chdir(tmp_path)
  return tmp_path


@pytest.mark.parametrize("name", ["lenet_bn.onnx", "lenet.onnx"])
def test_the_export_computes_the_torch_model(exported, name, elsewhere):
  folder, model = exported
  loaded = classifiers.load_model(folder / name)
  x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
  with torch.no_grad():
    want = model(torch.tensor(x)).numpy()
  got = np.asarray(loaded.apply_fn(loaded.params, jax.numpy.asarray(x))[0])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert len(loaded.batchnorm) == (2 if name == "lenet_bn.onnx" else 0)


def test_it_inverts_from_another_folder_with_the_batchnorm_prior(exported, elsewhere, capsys):
  folder, _ = exported
  code, out, err = run(capsys, "invert", folder / "lenet_bn.onnx", "--targets", "0-9",
                       "--restarts", "2", "--steps", "10", "--out", "out.npz")
  assert code == 0, err
  summary = json.loads(out.splitlines()[-1])
  assert "batchnorm_statistics(2 layers" in summary["objective"]
  assert np.load(elsewhere / "out.npz")["images"].shape == (10, 2, 1, 28, 28)


def test_folded_batchnorm_refuses_the_prior_with_one_line(exported, elsewhere, capsys):
  folder, _ = exported
  assert_refused(capsys, elsewhere, ["invert", folder / "lenet.onnx", "--targets", "0",
                                     "--batchnorm-prior", "1", "--out", "out.npz"],
                 "has no BatchNorm layers", "folds them into the convolutions")


def test_it_distills_into_lenet5_half(exported, elsewhere, capsys):
  folder, _ = exported
  code, out, err = run(capsys, "distill", folder / "lenet_bn.onnx", "--student", "lenet5-half",
                       "--images", "20", "--steps", "12", "--out", "s.msgpack")
  assert code == 0, err
  assert json.loads(out.splitlines()[-1])["student"] == "lenet5-half"
  checkpoint.load_checkpoint("s.msgpack", expect_model="lenet5-half")
