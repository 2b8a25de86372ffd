import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jinvert import checkpoint
from jinvert.cli import main
from conftest import REPO, idx_bytes, write_tiny_dataset


def run_cli(capsys, *argv):
  code = main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def assert_one_line_error(code, err, *fragments):
  assert code == 2
  assert err.count("\n") == 1 and "Traceback" not in err
  for fragment in fragments:
    assert fragment in err, err


def test_train_linear_prints_json_and_writes_checkpoint(tmp_path, capsys):
  out_path = tmp_path / "linear.msgpack"
  code, out, err = run_cli(capsys, "train", "linear", "--epochs", "2000", "--out", str(out_path))
  assert code == 0
  summary = json.loads(out.strip().splitlines()[-1])
  assert set(summary) == {"model", "dataset", "test_accuracy", "train_seconds", "checkpoint",
                          "weight", "bias"}
  params, meta = checkpoint.load_checkpoint(out_path, expect_model="linear")
  assert summary["weight"] == pytest.approx(float(params["params"]["out"]["kernel"][0, 0]))
  assert meta["recipe"]["epochs"] == 2000 and "epoch 2000/2000" in err


def test_unknown_model(capsys, tmp_path):
  code, _, err = run_cli(capsys, "train", "lenet", "--out", str(tmp_path / "x.msgpack"))
  assert_one_line_error(code, err, "unknown model 'lenet'", "mnist-mlp")
  assert not list(tmp_path.iterdir())


def test_truncated_idx_names_the_file_and_writes_nothing(isolated_env, capsys):
  folder = isolated_env / "data" / "mnist"
  write_tiny_dataset(folder)
  labels = folder / "t10k-labels-idx1-ubyte.gz"
  labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-2]))
  out_path = isolated_env / "out.msgpack"
  code, _, err = run_cli(capsys, "train", "mnist-mlp", "--data-dir", str(isolated_env / "data"),
                         "--out", str(out_path))
  assert_one_line_error(code, err, "t10k-labels-idx1-ubyte.gz: IDX file truncated")
  assert not out_path.exists()


def test_images_and_labels_of_different_counts(isolated_env, capsys):
  folder = isolated_env / "data" / "mnist"
  write_tiny_dataset(folder, n_train=12)
  (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(10))))
  code, _, err = run_cli(capsys, "train", "mnist-mlp", "--data-dir", str(isolated_env / "data"),
                         "--out", str(isolated_env / "o.msgpack"))
  assert_one_line_error(code, err, "12 images", "10 labels")
  assert not (isolated_env / "o.msgpack").exists()


def test_missing_data_folder_offline_says_what_was_tried(isolated_env, capsys):
  code, _, err = run_cli(capsys, "train", "fashion-mlp", "--data-dir", str(isolated_env / "none"),
                         "--out", str(isolated_env / "o.msgpack"))
  assert_one_line_error(code, err, "fashion-mnist not found; tried:", "none", "JINVERT_DATA=DIR")
  assert not (isolated_env / "o.msgpack").exists()


def test_python_dash_m_reports_usage_errors_in_one_line():
  env = dict(os.environ, JINVERT_OFFLINE="1")
  proc = subprocess.run([sys.executable, "-m", "jinvert", "train", "mnist-mlp", "--epochs", "x"],
                        capture_output=True, text=True, env=env, cwd=REPO)
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1
  assert "invalid int value: 'x'" in proc.stderr


def test_readme_first_lines_are_the_ci_commands():
  lines = [l for l in (REPO / "README.md").read_text().splitlines() if l.strip()]
  install, test = lines[1], lines[2]
  assert "pip install" in install and "jinvert" in install
  assert "pytest" in test
  assert test.strip() in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("dataset", ["colored-mnist", "colored-mnist-random"])
def test_train_color_cnn_on_either_colored_mnist(isolated_env, capsys, dataset):
  write_tiny_dataset(isolated_env / "data" / "mnist", n_train=128, n_test=8)
  out_path = isolated_env / "cc.msgpack"
  code, out, err = run_cli(capsys, "train", "color-cnn", "--dataset", dataset, "--epochs", "1",
                           "--data-dir", str(isolated_env / "data"), "--out", str(out_path))
  assert code == 0, err
  assert json.loads(out.splitlines()[-1])["dataset"] == dataset
  params, meta = checkpoint.load_checkpoint(out_path, expect_model="color-cnn")
  assert meta["dataset"] == dataset
  assert params["params"]["conv1"]["kernel"].shape == (3, 3, 3, 16)
