import json

import jax
import numpy as np
import pytest

from jinvert import checkpoint, engine, models, presets
from jinvert.cli.arguments import parse_targets
from jinvert.errors import JinvertError
from jinvert.input_space import InputSpace
from test_cli import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
  """Untrained checkpoints: enough to test the command's contract, in seconds."""
  folder = tmp_path_factory.mktemp("ckpt")
  paths = {}
  for name in ("mnist-mlp", "vae", "linear", "mnist-cvae"):
    paths[name] = folder / f"{name}.msgpack"
    checkpoint.save_checkpoint(paths[name], models.get_model(name).init_params(jax.random.key(0)),
                               {"model": name, "dataset": "mnist"})
  return paths


def test_parse_targets():
  assert parse_targets("0-3,8") == [0, 1, 2, 3, 8]
  with pytest.raises(JinvertError, match="cannot read '3-1'"):
    parse_targets("3-1")


def test_invert_raw_writes_documented_npz_json_and_png(ckpts, tmp_path, capsys):
  out, png = tmp_path / "r.npz", tmp_path / "r.png"
  code, stdout, _ = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--preset", "raw",
                            "--targets", "0-2", "--restarts", "4", "--steps", "6",
                            "--out", str(out), "--png", str(png))
  assert code == 0
  summary = json.loads(stdout.strip().splitlines()[-1])
  for key in ("targets", "restarts", "steps", "mean_target_prob", "min_class_mean_target_prob",
              "seconds", "compile_seconds", "out"):
    assert key in summary
  with np.load(out, allow_pickle=False) as f:
    assert f["images"].shape == (3, 4, 28, 28) and f["images"].dtype == np.float32
    assert 0.0 <= f["images"].min() and f["images"].max() <= 1.0
    np.testing.assert_array_equal(f["targets"], [0, 1, 2])
    assert f["target_prob"].shape == (3, 4) and f["loss_history"].shape == (6, 3, 4)
    assert summary["min_class_mean_target_prob"] == pytest.approx(
        float(f["target_prob"].mean(1).min()), rel=1e-5)
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_invert_units_and_natural_preset(ckpts, tmp_path, capsys):
  code, stdout, _ = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--objective", "unit",
                            "--layer", "hidden2", "--targets", "0-3", "--restarts", "1",
                            "--steps", "3", "--preset", "raw", "--out", str(tmp_path / "u.npz"))
  assert code == 0 and json.loads(stdout.splitlines()[-1])["targets"] == [0, 1, 2, 3]
  code, stdout, _ = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--preset", "natural",
                            "--prior", str(ckpts["vae"]), "--targets", "7", "--restarts", "2",
                            "--steps", "3", "--out", str(tmp_path / "n.npz"))
  assert code == 0
  with np.load(tmp_path / "n.npz") as f:
    assert f["images"].shape == (1, 2, 28, 28)


def test_invert_output_objective_from_target_file(ckpts, tmp_path, capsys):
  vectors = np.full((2, 10), 0.02, np.float32)
  vectors[0, 3] = vectors[1, 5] = 0.82
  np.save(tmp_path / "v.npy", vectors)
  code, stdout, _ = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--objective", "output",
                            "--target-file", str(tmp_path / "v.npy"), "--restarts", "2",
                            "--steps", "3", "--preset", "raw", "--out", str(tmp_path / "o.npz"))
  assert code == 0
  with np.load(tmp_path / "o.npz") as f:
    np.testing.assert_allclose(f["targets"], vectors)


@pytest.mark.parametrize("extra,fragments", [
    (["--targets", "0-10"], ["target 10 is outside the model's 10 classes"]),
    (["--objective", "unit", "--layer", "conv9"], ["no layer 'conv9'", "hidden1, hidden1_pre, hidden2, hidden2_pre"]),
    (["--steps", "0"], ["argument --steps: must be a whole number from 1 to 2,147,483,647, got 0"]),
    (["--targets", "x"], ["cannot read 'x'"]),
])
def test_invert_bad_input_exits_2_and_writes_nothing(ckpts, tmp_path, capsys, extra, fragments):
  out = tmp_path / "x.npz"
  code, _, err = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--preset", "raw",
                         "--out", str(out), *extra)
  assert_one_line_error(code, err, *fragments)
  assert not out.exists()


@pytest.mark.parametrize("vector,fragment", [
    (np.array([0.5, np.nan] + [0.0] * 8), "v.npy: holds NaN or inf"),
    (np.ones((1, 7)) / 7, r"must have shape (T, 10)"),
])
def test_invert_bad_target_vector(ckpts, tmp_path, capsys, vector, fragment):
  np.save(tmp_path / "v.npy", vector)
  code, _, err = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--objective", "output",
                         "--target-file", str(tmp_path / "v.npy"), "--out", str(tmp_path / "x.npz"))
  assert_one_line_error(code, err, fragment)


def test_invert_rejects_wrong_checkpoints(ckpts, tmp_path, capsys):
  code, _, err = run_cli(capsys, "invert", str(ckpts["linear"]), "--out", str(tmp_path / "x.npz"))
  assert_one_line_error(code, err, "must be a classifier checkpoint", "'linear'",
                        "use jinvert reconstruct")
  bad = tmp_path / "bad.msgpack"
  checkpoint.save_checkpoint(bad, models.get_model("r2rt-mlp").init_params(jax.random.key(0)),
                             {"model": "mnist-mlp"})
  code, _, err = run_cli(capsys, "invert", str(bad), "--out", str(tmp_path / "x.npz"))
  assert_one_line_error(code, err, "params/dense1/kernel has shape (784, 100)")
  assert not (tmp_path / "x.npz").exists()


def test_reconstruct_prints_descent_and_closed_form(ckpts, tmp_path, capsys):
  params, _ = checkpoint.load_checkpoint(ckpts["linear"])
  w = float(params["params"]["out"]["kernel"][0, 0])
  code, stdout, _ = run_cli(capsys, "reconstruct", str(ckpts["linear"]), "--target", "3",
                            "--lr", str(0.25 / w ** 2), "--png", str(tmp_path / "x.png"))
  assert code == 0
  result = json.loads(stdout.strip().splitlines()[-1])
  assert result["reachable"] and result["x0"] == pytest.approx(result["closed_form_x0"], rel=1e-4)
  assert (tmp_path / "x.png").exists()
  code, stdout, _ = run_cli(capsys, "reconstruct", str(ckpts["linear"]), "--target", "1.5",
                            "--activation", "sigmoid")
  result = json.loads(stdout.strip().splitlines()[-1])
  assert code == 0 and result["reachable"] is False and result["x0"] is None
  code, _, err = run_cli(capsys, "reconstruct", str(ckpts["mnist-mlp"]), "--target", "3")
  assert_one_line_error(code, err, "checkpoint of model 'mnist-mlp', expected 'linear'")


def test_generate_has_invert_layout_and_is_deterministic(ckpts, tmp_path, capsys):
  runs = []
  for name in ("a", "b"):
    code, stdout, _ = run_cli(capsys, "generate", str(ckpts["mnist-cvae"]), "--targets", "2-4",
                              "--samples", "5", "--classifier", str(ckpts["mnist-mlp"]),
                              "--out", str(tmp_path / f"{name}.npz"))
    assert code == 0
    runs.append(json.loads(stdout.strip().splitlines()[-1]))
  assert runs[0]["restarts"] == 5 and runs[0]["targets"] == [2, 3, 4]
  with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
    assert a["images"].shape == (3, 5, 28, 28) and a["target_prob"].shape == (3, 5)
    np.testing.assert_array_equal(a["images"], b["images"])
    assert np.isfinite(a["target_prob"]).all()
  code, _, err = run_cli(capsys, "generate", str(ckpts["mnist-cvae"]), "--targets", "9-10",
                         "--out", str(tmp_path / "c.npz"))
  assert_one_line_error(code, err, "target 10 is outside the model's 10 classes")


def test_the_strokes_preset_keeps_the_surest_of_its_draws_first_and_units_draw_one(
    ckpts, tmp_path, capsys, monkeypatch):
  """The preset's `draws` reaches the engine from the command line: each target's restarts come
  surest first (drawn in random order, 10 targets x 2 restarts would be so 1 time in 1,024);
  a unit target, with no probability to rank by, asks the engine for one (what it asks is
  checked, not run: another strokes program would take a quarter of a minute to compile)."""
  code, stdout, err = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--preset", "strokes",
                              "--targets", "0-9", "--restarts", "2", "--steps", "3",
                              "--out", str(tmp_path / "s.npz"))
  assert code == 0, err
  assert json.loads(stdout.splitlines()[-1])["draws"] == presets.get("strokes").draws > 1
  with np.load(tmp_path / "s.npz") as f:
    assert f["images"].shape == (10, 2, 28, 28)
    assert np.all(f["target_prob"][:, 0] >= f["target_prob"][:, 1])
  asked = {}

  def timed_invert(*args, draws, **kwargs):
    asked["draws"] = draws
    raise JinvertError("asked")
  monkeypatch.setattr(engine, "timed_invert", timed_invert)
  code, _, err = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--preset", "strokes",
                         "--objective", "unit", "--layer", "hidden2", "--targets", "0-1",
                         "--restarts", "2", "--steps", "3", "--out", str(tmp_path / "u.npz"))
  assert "asked" in err and asked == {"draws": 1}


def test_the_capsules_preset_asks_the_engine_for_its_two_recipes_and_its_score(
    ckpts, tmp_path, capsys, monkeypatch):
  """Its second recipe and its score reach the engine (checked, not run), with --diversity
  added to both recipes; an objective of the command line's own draws without them."""
  asked = []

  def timed_invert(*args, draws, pooled, score, **kwargs):
    asked.append((args[2].name, draws, [(o.name, n) for o, n in pooled],
                  None if score is None else score.name))
    raise JinvertError("asked")
  monkeypatch.setattr(engine, "timed_invert", timed_invert)
  common = ("--targets", "0-1", "--restarts", "2", "--steps", "3")
  for extra in ((), ("--diversity", "0.5"), ("--objective", "unit", "--layer", "hidden2")):
    code, _, err = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--preset", "capsules",
                           *common, *extra, "--out", str(tmp_path / "c.npz"))
    assert "asked" in err, err
  preset = presets.build("capsules", InputSpace((28, 28)))
  (first, second), = [(o.name, n) for o, n in preset.pooled]
  diverse = asked[1][0][len(preset.objective.name):]  # the diversity term, at its layer
  assert diverse.startswith(" + 0.5*diversity(")
  assert asked[0] == (preset.objective.name, 3, [(first, second)], preset.score.name)
  assert asked[1] == (preset.objective.name + diverse, 3, [(first + diverse, second)],
                      preset.score.name)
  assert asked[2] == ("unit('hidden2')", 1, [], None)


def test_draws_asked_of_any_preset_keeps_the_surest_and_is_refused_for_units(
    ckpts, tmp_path, capsys):
  code, stdout, err = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--preset", "raw",
                              "--draws", "3", "--targets", "0-9", "--restarts", "3", "--steps",
                              "2", "--out", str(tmp_path / "r.npz"))
  assert code == 0, err
  assert json.loads(stdout.splitlines()[-1])["draws"] == 3
  with np.load(tmp_path / "r.npz") as f:
    assert f["images"].shape == (10, 3, 28, 28)
    assert np.all(np.diff(f["target_prob"], axis=1) <= 0)  # surest first
  out = tmp_path / "u.npz"
  code, _, err = run_cli(capsys, "invert", str(ckpts["mnist-mlp"]), "--objective", "unit",
                         "--layer", "hidden2", "--draws", "2", "--out", str(out))
  assert_one_line_error(code, err, "--draws 2 keeps the restarts whose target is most probable; "
                        "unit targets have no probability")
  assert not out.exists()
