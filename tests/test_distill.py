"""Data-free distillation: no data before the end, determinism, chunking, gradients, bad input."""

import inspect
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinvert import checkpoint, distill, engine, models, objectives, presets
from jinvert.errors import JinvertError
from jinvert.objectives import Context
from conftest import write_tiny_dataset
from contract import assert_refused, run, save

SMALL = ["--images", "20", "--steps", "12"]


@pytest.fixture
def work(tmp_path, monkeypatch, isolated_env):
  save(tmp_path / "teacher.msgpack", "mnist-mlp", dataset="mnist")
  save(tmp_path / "linear.msgpack", "linear")
  monkeypatch.chdir(tmp_path)
  return tmp_path


@pytest.mark.parametrize("soft", [[], ["--soft-targets"],
                                  ["--preset", "readable", "--soft-targets"],
                                  ["--preset", "strokes"], ["--preset", "capsules"]])
def test_distills_with_every_data_source_unreachable(work, capsys, monkeypatch, soft):
  """JINVERT_DATA empty, the cache empty, offline, no Debian folder: synthesis and training
  run (one-hot or soft targets, the readable preset's soft targets, the strokes and capsules
  presets); the data is asked for only after the student is trained, and then found nowhere."""
  (work / "empty").mkdir()
  monkeypatch.setenv("JINVERT_DATA", str(work / "empty"))
  calls = []
  real_distill, real_load = distill.distill, __import__("jinvert.data").data.load_dataset

  def recorded_distill(*args, **kwargs):
    calls.append("distill started")
    result = real_distill(*args, **kwargs)
    calls.append("student trained")
    return result

  def recorded_load(*args, **kwargs):
    calls.append("data asked for")
    return real_load(*args, **kwargs)

  monkeypatch.setattr(distill, "distill", recorded_distill)
  monkeypatch.setattr("jinvert.data.load_dataset", recorded_load)
  code, out, err = run(capsys, "distill", "teacher.msgpack", "--student", "mnist-mlp", *SMALL,
                       *soft, "--out", "student.msgpack")
  assert code == 0, err
  assert calls == ["distill started", "student trained", "data asked for"]
  summary = json.loads(out.splitlines()[-1])
  assert summary["soft_targets"] is ("--soft-targets" in soft)
  assert summary["student_test_accuracy"] is None and summary["uses_data"] is False
  assert set(summary) >= {"teacher", "teacher_test_accuracy", "student", "student_test_accuracy",
                          "images", "preset", "synth_seconds", "train_seconds", "checkpoint"}
  notes = [line for line in err.splitlines() if "note:" in line]
  assert len(notes) == 1 and "mnist not found" in notes[0]
  assert not list((work / "cache").rglob("*"))  # nothing cached, nothing downloaded
  params, meta = checkpoint.load_checkpoint("student.msgpack", expect_model="mnist-mlp")
  assert meta["recipe"]["preset"] == summary["preset"] and meta["test_accuracy"] is None
  code, out, err = run(capsys, "invert", "student.msgpack", "--preset", "data-free", "--steps",
                       "3", "--restarts", "2", "--out", "inv.npz")
  assert code == 0, err


def test_scores_the_student_when_the_test_set_is_there(work, capsys, monkeypatch):
  write_tiny_dataset(work / "data" / "mnist")
  code, out, err = run(capsys, "distill", "teacher.msgpack", "--student", "mnist-mlp", *SMALL,
                       "--preset", "noise", "--data-dir", "data", "--out", "s.msgpack")
  assert code == 0, err
  summary = json.loads(out.splitlines()[-1])
  assert 0.0 <= summary["student_test_accuracy"] <= 1.0
  assert 0.0 <= summary["teacher_test_accuracy"] <= 1.0 and "note:" not in err


@pytest.mark.parametrize("student, steps, expected", [
  ("lenet5-half", [], 108_000), ("mnist-mlp", [], 36_000), ("lenet5-half", ["--steps", "12"], 12)])
def test_the_students_recipe_sets_its_steps_unless_given(work, capsys, monkeypatch, student,
                                                         steps, expected):
  """A convnet student trains three times the MLP's steps by default; --steps overrides."""
  recipes, signature = [], inspect.signature(distill.distill)

  def untrained(*args, **kwargs):  # the student left as it starts
    given = signature.bind(*args, **kwargs).arguments
    recipes.append(given["recipe"])
    return given["student_params"], None, {"synth_seconds": 0.0, "train_seconds": 0.0}

  monkeypatch.setattr(distill, "distill", untrained)
  code, _, err = run(capsys, "distill", "teacher.msgpack", "--student", student, "--images",
                     "20", "--preset", "noise", *steps, "--out", "s.msgpack")
  assert code == 0, err
  assert [r.steps for r in recipes] == [expected]
  assert checkpoint.load_checkpoint("s.msgpack")[1]["recipe"]["distill"]["steps"] == expected


def _teacher():
  spec = models.get_model("mnist-mlp")
  return models.apply_with_activations(spec.module()), spec.init_params(jax.random.key(0))


def test_chunked_synthesis_equals_one_batch():
  apply_fn, params = _teacher()
  preset = presets.data_free(steps=5)
  whole, _ = distill.synthesize(apply_fn, params, preset, 30, 10, (28, 28), jax.random.key(3))
  counted = []
  chunked, _ = distill.synthesize(apply_fn, params, preset, 30, 10, (28, 28), jax.random.key(3),
                                  max_chunk=2, on_images=counted.append)
  np.testing.assert_array_equal(chunked, whole)
  assert counted == [20, 10] and whole.shape == (30, 28, 28)


def test_a_preset_drawing_two_keeps_each_classs_surer_half_of_twice_the_images():
  """With `draws=2` the transfer set is, class by class, the half of what the same key draws
  for twice the images that the teacher is surest of; progress counts the images kept."""
  apply_fn, params = _teacher()
  once = presets.data_free(steps=5)
  twice, _ = distill.synthesize(apply_fn, params, once, 60, 10, (28, 28), jax.random.key(3))
  kept, _ = distill.synthesize(apply_fn, params, once._replace(draws=2), 30, 10, (28, 28),
                               jax.random.key(3))
  probs = np.asarray(jax.nn.softmax(engine.outputs_only(apply_fn)(params, jnp.asarray(twice))))
  for c in range(10):
    sureness = probs[6 * c:6 * (c + 1), c]
    order = np.argsort(-sureness, kind="stable")[:3]
    assert len(set(sureness)) == 6
    np.testing.assert_array_equal(kept[3 * c:3 * (c + 1)], twice[6 * c:6 * (c + 1)][order])
  counted = []  # progress counts kept images: chunks of 2 of the 6 drawn are 10 kept per call
  distill.synthesize(apply_fn, params, once._replace(draws=2, steps=1), 30, 10, (28, 28),
                     jax.random.key(3), max_chunk=2, on_images=counted.append)
  assert counted == [10, 10, 10] and kept.shape == (30, 28, 28)


@pytest.mark.parametrize("soft", [False, True])
def test_a_preset_of_two_recipes_keeps_what_invert_keeps(soft):
  """The capsules preset pools the draws of two recipes and keeps the best by its own score:
  each class's (or soft target's) images are those `invert` keeps from the same key."""
  apply_fn, params = _teacher()
  targets = distill.soft_targets(jax.random.key(3), jnp.eye(10) + 0.3, 20) if soft else None
  likelihood = -objectives.cross_entropy_to() if soft else None
  preset = presets.capsules(steps=3, draws=1, narrow_draws=2, likelihood=likelihood)
  images, _ = distill.synthesize(apply_fn, params, preset, 20, 10, (28, 28), jax.random.key(4),
                                 targets=targets)
  if soft:
    kept = engine.invert(apply_fn, params, targets=targets, key=jax.random.fold_in(
        jax.random.key(4), 0), input_shape=(28, 28), record_every=0, **preset.arguments())
    np.testing.assert_array_equal(images, kept.inputs[:, 0])
  else:
    kept = engine.invert(apply_fn, params, targets=jnp.arange(10), key=jax.random.key(4),
                         input_shape=(28, 28), restarts=2, record_every=0, **preset.arguments())
    np.testing.assert_array_equal(images, np.asarray(kept.inputs).reshape(20, 28, 28))


def test_same_seed_gives_the_same_student_bit_for_bit():
  apply_fn, params = _teacher()
  spec = models.get_model("mnist-mlp")
  recipe = distill.StudentRecipe(steps=15, batch_size=10)

  start = spec.init_params(jax.random.key(1))

  def student():
    return distill.distill(apply_fn, params, spec.module(), start, 20, 10, (28, 28),
                           jax.random.key(1), presets.data_free(steps=4), rounds=2,
                           recipe=recipe)[0]

  a, b = student(), student()
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  # and not by doing nothing (another key, other images: test_engine; another --seed, another
  # student: test_distributed)
  assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(start)))


@pytest.fixture
def x64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


def _finite_differences(f, x, directions=3, eps=1e-6):
  grad = jax.grad(f)(x)
  for i in range(directions):
    v = jax.random.normal(jax.random.key(10 + i), x.shape, x.dtype)
    numeric = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(grad, v), numeric, rtol=1e-6, atol=1e-9)


def test_priors_gradients_match_finite_differences(x64):
  """The data-free preset's whole objective, through its parameterisation, and the
  disagreement objective of adaptive rounds."""
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  w_t = jax.random.normal(k1, (784, 10), jnp.float64) * 0.1
  w_s = jax.random.normal(k2, (784, 10), jnp.float64) * 0.1
  teacher = lambda w, x: x.reshape(x.shape[0], -1) @ w
  student = lambda w, x: jnp.tanh(x.reshape(x.shape[0], -1) @ w)
  model = distill.with_student(teacher, student)
  preset = presets.data_free()
  for objective in (preset.objective, distill.disagreement(4.0), preset.objective + distill.disagreement()):
    def f(latent):
      x = preset.parameterization.to_input(latent)
      out, acts = model((w_t, w_s), x[None])
      return objective(Context(x, out[0], {k: v[0] for k, v in acts.items()}, 3))
    _finite_differences(f, jax.random.normal(k3, (28, 28), jnp.float64) - 2.0)


def test_kd_loss_is_the_tempered_kl():
  t, s = jnp.array([[2.0, 0.0, -1.0]]), jnp.array([[0.5, 0.5, 0.0]])
  p, q = jax.nn.softmax(t / 4), jax.nn.softmax(s / 4)
  assert float(distill.kd_loss(s, t, 4.0)) == pytest.approx(16 * float(jnp.sum(p * jnp.log(p / q))),
                                                            rel=1e-5)
  assert float(distill.kd_loss(t, t, 4.0)) == pytest.approx(0.0, abs=1e-7)


def test_augment_distorts_images_only():
  key, images = jax.random.key(0), jax.random.uniform(jax.random.key(1), (4, 12, 12))
  plain = distill.augment(key, images, 0.0, 0.0)
  np.testing.assert_array_equal(plain, images)
  bent = distill.augment(key, images, 0.0, 0.0, distortion=3.0)
  assert bent.shape == images.shape and not np.allclose(bent, images)
  with pytest.raises(JinvertError, match=r"a distortion needs images; these inputs are \(5,\)"):
    distill.augment(key, jnp.ones((4, 5)), 0.5, 0.1, distortion=3.0)


@pytest.mark.parametrize("argv,fragment", [
    (["distill", "linear.msgpack", "--student", "mnist-mlp", "--images", "20"],
     "TEACHER linear.msgpack must be a classifier checkpoint"),
    (["distill", "teacher.msgpack", "--student", "mnist-mlp", "--images", "25"],
     "--images must be a multiple of the teacher's 10 classes, got 25"),
    (["distill", "teacher.msgpack", "--student", "mnist-mlp", "--images", "0"],
     "argument --images: must be a whole number from 1"),
    (["distill", "teacher.msgpack", "--student", "lenet7", "--images", "20"],
     "unknown model 'lenet7'"),
    (["distill", "teacher.msgpack", "--student", "linear", "--images", "20"],
     "--student linear takes inputs of shape (1,), the teacher (28, 28)"),
    (["distill", "teacher.msgpack", "--student", "vae", "--images", "20"],
     "--student vae must be a classifier checkpoint"),
    (["distill", "teacher.msgpack", "--student", "mnist-mlp", "--images", "20", "--rounds", "3"],
     "rounds must be from 1 to 2"),
    (["distill", "teacher.msgpack", "--student", "mnist-mlp", "--images", "10000000000"],
     "argument --images: must be a whole number from 1"),
    (["distill", "teacher.msgpack", "--student", "mnist-mlp", "--images", "20", "--preset", "raw",
      "--soft-targets"],
     "--soft-targets is for the data-free, readable, strokes and capsules presets, not raw"),
])
def test_bad_input(work, capsys, argv, fragment):
  assert_refused(capsys, work, argv + ["--out", "s.msgpack"], fragment)


def _onnx_teacher(path, out_shape=("N", 10), reshape_to=None):
  """A torch-style ONNX classifier on (N, 1, 28, 28): flatten, one Gemm to 10 scores (then a
  Reshape to `reshape_to`, for an output that is not a score vector)."""
  pytest.importorskip("onnx")
  from onnx import TensorProto, helper, numpy_helper
  rng = np.random.default_rng(0)
  nodes = [helper.make_node("Flatten", ["x"], ["f"]),
           helper.make_node("Gemm", ["f", "w", "b"], ["z" if reshape_to else "y"])]
  inits = [numpy_helper.from_array(rng.normal(size=(784, 10)).astype(np.float32), "w"),
           numpy_helper.from_array(np.zeros(10, np.float32), "b")]
  if reshape_to:
    nodes.append(helper.make_node("Reshape", ["z", "shape"], ["y"]))
    inits.append(numpy_helper.from_array(np.array(reshape_to, np.int64), "shape"))
  graph = helper.make_graph(
      nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
      [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
  path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                   .SerializeToString())
  return path


def test_an_onnx_teacher_from_torch_distills_into_a_zoo_student(work, capsys):
  """A (1, 28, 28) ONNX teacher teaches lenet5-half, which takes (28, 28): the same grey image
  in another layout. Its test set is named by --dataset, for the score only."""
  _onnx_teacher(work / "t.onnx")
  write_tiny_dataset(work / "data" / "mnist")
  code, out, err = run(capsys, "distill", "t.onnx", "--student", "lenet5-half", *SMALL,
                       "--dataset", "mnist", "--data-dir", "data", "--out", "s.msgpack")
  assert code == 0, err
  summary = json.loads(out.splitlines()[-1])
  assert 0.0 <= summary["student_test_accuracy"] <= 1.0
  assert 0.0 <= summary["teacher_test_accuracy"] <= 1.0
  _, meta = checkpoint.load_checkpoint("s.msgpack", expect_model="lenet5-half")
  zoo = models.get_model("lenet5-half").distill
  assert {k: meta["recipe"]["distill"][k] for k in zoo} == dict(zoo, steps=12)  # --steps 12


def test_onnx_teachers_the_student_cannot_learn_from_are_refused(work, capsys):
  _onnx_teacher(work / "t.onnx")
  assert_refused(capsys, work, ["distill", "t.onnx", "--student", "lenet5-half", *SMALL,
                                "--soft-targets", "--out", "s.msgpack"],
                 "--soft-targets: TEACHER t.onnx has no final dense layer 'out'")
  _onnx_teacher(work / "grid.onnx", ("N", 2, 5), reshape_to=[-1, 2, 5])
  assert_refused(capsys, work, ["distill", "t.onnx", "--student", "color-cnn", *SMALL,
                                "--out", "s.msgpack"],
                 "--student color-cnn takes inputs of shape (28, 28, 3), the teacher (1, 28, 28)")
  assert_refused(capsys, work, ["distill", "grid.onnx", "--student", "lenet5-half", *SMALL,
                                "--out", "s.msgpack"],
                 "grid.onnx: output 'y' has shape (2, 5) per example; jinvert inverts classifiers "
                 "with one vector of outputs")


def test_class_similarity_is_the_final_layers_cosine_scaled_per_row():
  kernel = jax.random.normal(jax.random.key(0), (84, 10))
  similarity = distill.class_similarity(kernel)
  unit = kernel / jnp.linalg.norm(kernel, axis=0, keepdims=True)
  cosine = unit.T @ unit
  for c in range(10):
    row = (cosine[c] - cosine[c].min()) / (cosine[c].max() - cosine[c].min())
    np.testing.assert_allclose(similarity[c], row, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jnp.diag(similarity), 1.0, rtol=1e-6)  # a class is most like itself


def test_soft_targets_are_class_major_distributions_led_by_their_class():
  similarity = distill.class_similarity(jax.random.normal(jax.random.key(1), (84, 10)))
  targets = distill.soft_targets(jax.random.key(2), similarity, 2000)
  assert targets.shape == (2000, 10)
  np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-5)
  blocks = targets.reshape(10, 200, 10)
  assert list(np.asarray(blocks.mean(axis=1).argmax(axis=1))) == list(range(10))
  # beta 0.1 (each block's second half) concentrates: its largest entries are larger
  assert float(blocks[:, 100:].max(axis=2).mean()) > float(blocks[:, :100].max(axis=2).mean())


def test_soft_synthesis_matches_each_images_own_target(monkeypatch):
  """Every image matches its own draw, in one call or in pieces of the lanes."""
  spec = models.get_model("mnist-mlp")
  params = spec.init_params(jax.random.key(0))
  # an untrained net's logits span too little to reach near one-hot targets: widen them
  params["params"]["out"]["kernel"] = 30.0 * params["params"]["out"]["kernel"]
  apply_fn = models.apply_with_activations(spec.module())
  targets = distill.soft_targets(
      jax.random.key(3), distill.class_similarity(params["params"]["out"]["kernel"]), 40)
  preset = presets.data_free(steps=100, likelihood=-objectives.cross_entropy_to())
  images, _ = distill.synthesize(apply_fn, params, preset, 40, 10, (28, 28), jax.random.key(4),
                                 targets=targets)
  probs = jax.nn.softmax(spec.module().apply(params, jnp.asarray(images)))
  before = jax.nn.softmax(spec.module().apply(params, jnp.full((40, 28, 28), 0.12)))
  error = lambda p: float(jnp.mean(jnp.abs(p - targets)))
  assert error(probs) < 0.5 * error(before), (error(probs), error(before))
  monkeypatch.setattr(distill, "SOFT_PIECE", 15)  # pieces of 14, 14 and 12 lanes
  pieced, _ = distill.synthesize(apply_fn, params, preset, 40, 10, (28, 28), jax.random.key(4),
                                 targets=targets)
  pieced_probs = jax.nn.softmax(spec.module().apply(params, jnp.asarray(pieced)))
  assert pieced.shape == images.shape and error(pieced_probs) < 0.5 * error(before)


def test_soft_synthesis_drawing_two_keeps_what_invert_keeps():
  """Soft targets with `draws=2`: each image is the one `invert(..., draws=2)` keeps for its
  target from the same key, the surer of its two."""
  apply_fn, params = _teacher()
  targets = distill.soft_targets(jax.random.key(3), jnp.eye(10) + 0.3, 20)
  preset = presets.data_free(steps=5, likelihood=-objectives.cross_entropy_to())
  images, _ = distill.synthesize(apply_fn, params, preset._replace(draws=2), 20, 10, (28, 28),
                                 jax.random.key(4), targets=targets)
  kept = engine.invert(apply_fn, params, targets=targets, key=jax.random.fold_in(
      jax.random.key(4), 0), input_shape=(28, 28), record_every=0, **preset._replace(
          draws=2).arguments())
  once = engine.invert(apply_fn, params, targets=targets, key=jax.random.fold_in(
      jax.random.key(4), 0), input_shape=(28, 28), record_every=0, restarts=2,
      **preset._replace(draws=1).arguments())
  np.testing.assert_array_equal(images, kept.inputs[:, 0])
  assert not np.array_equal(images, once.inputs[:, 0])  # the surer is not always the first
