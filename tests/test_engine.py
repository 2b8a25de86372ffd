"""The engine: vmapped lanes equal the per-lane loop; recording, memory, chunks, progress."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jinvert import engine, memory
from jinvert import objectives as ob
from jinvert import parameterizations as pz
from jinvert import transforms
from jinvert.engine import (InversionResult, invert, keep_best, lane_keys, make_inversion,
                            plan_restarts, pool, result_bytes, split_outputs, outputs_only,
                            timed_invert)
from jinvert.errors import JinvertError
from conftest import tiny_model

SHAPE = (5, 5)

# Running the restarts in chunks changes the batch XLA sees, and with it perhaps the kernel of a
# product, which rounds differently: chunked results equal one call's to rounding, not bit for
# bit. The difference scales with the unit roundoff u: on an AVX2-only host these 12 Adam steps
# in float32 (u = 6.0e-8) differed by up to 2.6e-6 (2 of 700 pixels). In float64 (u = 1.1e-16,
# 2^29 times smaller) the same steps differ by about 2.6e-6 / 2^29 = 4.8e-15; these tests run in
# float64 and allow 1e-10, a margin of 2e4 for kernels that round worse.
KERNEL_TOLERANCE = 1e-10


def _run(apply_fn, params, objective, targets, **kw):
  kw.setdefault("steps", 20)
  return invert(apply_fn, params, objective, targets, key=kw.pop("key", jax.random.key(0)),
                input_shape=SHAPE, **kw)


def test_vmapped_batch_equals_per_target_loop(x64):
  # float64, so the only difference left between the batch and the loop is the batching
  apply_fn, params = tiny_model(jax.random.key(0), dtype=jnp.float64)
  targets = jnp.arange(4)
  key = jax.random.key(7)
  batched = _run(apply_fn, params, ob.class_log_prob(), targets, restarts=3, key=key)
  run = jax.jit(make_inversion(apply_fn, ob.class_log_prob(), optax.adam(0.05), pz.pixels(), 20, SHAPE))
  keys = lane_keys(key, 4, 3)
  for t in range(4):
    for r in range(3):
      single = run(params, targets[t:t + 1], keys[t:t + 1, r:r + 1])
      np.testing.assert_allclose(batched.inputs[t, r], single.inputs[0, 0], rtol=1e-9, atol=1e-12)
      np.testing.assert_allclose(batched.loss_history[:, t, r], single.loss_history[:, 0, 0],
                                 rtol=1e-9)


def test_same_key_same_images_and_other_key_other_images():
  apply_fn, params = tiny_model(jax.random.key(0))
  kw = dict(restarts=2, parameterization=pz.sigmoid(), transform=transforms.compose(
      [transforms.jitter(1), transforms.blur(1.0)]))
  a = _run(apply_fn, params, ob.class_logit(), jnp.arange(4), key=jax.random.key(5), **kw)
  b = _run(apply_fn, params, ob.class_logit(), jnp.arange(4), key=jax.random.key(5), **kw)
  c = _run(apply_fn, params, ob.class_logit(), jnp.arange(4), key=jax.random.key(6), **kw)
  np.testing.assert_array_equal(a.inputs, b.inputs)
  assert not np.allclose(a.inputs, c.inputs)


def test_record_every_keeps_every_kth_step():
  apply_fn, params = tiny_model(jax.random.key(0))
  full = _run(apply_fn, params, ob.class_logit(), jnp.arange(4), steps=12)
  sparse = _run(apply_fn, params, ob.class_logit(), jnp.arange(4), steps=12, record_every=4)
  np.testing.assert_allclose(sparse.loss_history, full.loss_history[::4], rtol=1e-5)
  np.testing.assert_allclose(sparse.inputs, full.inputs, atol=1e-5)
  with pytest.raises(JinvertError, match="record_every must divide steps"):
    _run(apply_fn, params, ob.class_logit(), jnp.arange(4), steps=12, record_every=5)
  first_only = _run(apply_fn, params, ob.class_logit(), jnp.arange(4), steps=12, record_every=0)
  np.testing.assert_allclose(first_only.loss_history, full.loss_history[:1], rtol=1e-5)


def test_memory_does_not_grow_with_steps_when_nothing_is_recorded():
  apply_fn, params = tiny_model(jax.random.key(0))
  targets, keys = jnp.arange(4), lane_keys(jax.random.key(0), 4, 64)

  def device_bytes(steps, record_every):  # outputs and temporaries
    run = jax.jit(make_inversion(apply_fn, ob.class_logit(), optax.sgd(0.1), pz.pixels(), steps,
                                 SHAPE, record_every=record_every, record_inputs=True))
    stats = run.lower(params, targets, keys).compile().memory_analysis()
    return stats.output_size_in_bytes + stats.temp_size_in_bytes

  # 256 lanes x 1000 steps of loss, probability and a 25-pixel input would be ~27 MB; the
  # 99 extra inputs recorded every 10th step are 2.5 MB.
  assert device_bytes(1000, 0) - device_bytes(10, 0) < 100_000
  assert device_bytes(1000, 10) - device_bytes(10, 10) > 99 * 256 * 25 * 4


def test_target_probability_history_rises_for_class_targets():
  apply_fn, params = tiny_model(jax.random.key(0))
  r = _run(apply_fn, params, ob.class_log_prob(), jnp.arange(4), restarts=2, steps=50)
  probs = jax.nn.softmax(r.outputs)[jnp.arange(4), :, jnp.arange(4)]
  assert bool(jnp.all(r.target_prob[-1] > r.target_prob[0]))
  assert float(probs.min()) > float(r.target_prob[0].max())
  unit = _run(apply_fn, params, ob.unit("h"), jnp.arange(6), steps=5)
  assert bool(jnp.all(jnp.isnan(unit.target_prob)))


@pytest.mark.parametrize("objective,targets,kw,message", [
    (ob.class_logit(), [0, 4], {}, r"target 4 is outside the model's 4 classes \(valid: 0-3\)"),
    (ob.cross_entropy_to(), [[0.5, 0.5]], {}, r"must have shape \(T, 4\) .* got \(1, 2\)"),
    (ob.unit("h9"), [0], {}, "no layer 'h9'; valid layer names: h"),
    (ob.unit("h"), [6], {}, "outside the model's 6 units"),
    (ob.class_logit(), [0], {"steps": 0}, "steps must be positive, got 0"),
    (ob.class_logit(), [0], {"restarts": 0}, "restarts must be positive"),
])
def test_bad_input_is_a_clear_error(objective, targets, kw, message):
  apply_fn, params = tiny_model(jax.random.key(0))
  with pytest.raises(JinvertError, match=message):
    _run(apply_fn, params, objective, np.asarray(targets), **kw)


def test_input_shape_the_model_does_not_take():
  apply_fn, params = tiny_model(jax.random.key(0))
  with pytest.raises(JinvertError, match=r"does not take inputs of shape \(28, 28\)"):
    invert(apply_fn, params, ob.class_logit(), [0], key=jax.random.key(0), input_shape=(28, 28))


def test_unit_maximiser_matches_closed_form_in_the_box():
  # the pre-activation w_j . x is maximal over [0, 1]^n at x = (w_j > 0)
  apply_fn, params = tiny_model(jax.random.key(0))
  result = _run(apply_fn, params, ob.unit("h_pre"), jnp.arange(6), steps=200,
                optimizer=optax.sgd(1.0))
  w = params["w1"].T.reshape(6, *SHAPE)
  clear = jnp.abs(w) > 0.01  # pixels whose weight moves them at least 0.01 a step
  assert float(clear.mean()) > 0.9
  np.testing.assert_array_equal(result.inputs[:, 0][clear], (w > 0)[clear].astype(jnp.float32))


def test_chunked_restarts_equal_one_call(x64):
  """Over the memory limit, the restarts run in chunks: the same images and histories, to the
  rounding of another kernel (KERNEL_TOLERANCE)."""
  apply_fn, params = tiny_model(jax.random.key(0), dtype=jnp.float64)
  kw = dict(key=jax.random.key(4), input_shape=SHAPE, restarts=7, steps=12,
            optimizer=optax.adam(0.05), parameterization=pz.pixels())
  whole, timing = timed_invert(apply_fn, params, ob.class_log_prob(), jnp.arange(4), **kw)
  assert timing["chunks"] == 1
  run = jax.jit(make_inversion(apply_fn, ob.class_log_prob(), optax.adam(0.05), pz.pixels(), 12,
                               SHAPE))
  need = {r: memory.compiled_bytes(plan_restarts(run, params, jnp.arange(4), r)[0])
          for r in (3, 7)}
  chunked, timing = timed_invert(apply_fn, params, ob.class_log_prob(), jnp.arange(4),
                                 device_bytes=need[3], **kw)
  assert timing["chunks"] == 3  # 7 restarts as 3 + 3 + 1 (padded)
  for field in ("inputs", "loss_history", "target_prob", "outputs"):
    np.testing.assert_allclose(getattr(chunked, field), getattr(whole, field), rtol=0,
                               atol=KERNEL_TOLERANCE, err_msg=field)
  assert chunked.inputs.shape == whole.inputs.shape == (4, 7) + SHAPE


def test_refuses_what_cannot_fit_even_in_one_restart():
  apply_fn, params = tiny_model(jax.random.key(0))
  with pytest.raises(JinvertError, match="would take about .* more than the"):
    _run(apply_fn, params, ob.class_logit(), jnp.arange(4), restarts=2, device_bytes=100)
  with pytest.raises(JinvertError, match="the results of 4 targets x 1,000,000,000 restarts"):
    _run(apply_fn, params, ob.class_logit(), jnp.arange(4), restarts=10 ** 9)


@pytest.mark.parametrize("record_every,record_inputs", [(1, False), (4, True), (0, False)])
def test_result_bytes_match_the_traced_shapes(record_every, record_inputs):
  apply_fn, params = tiny_model(jax.random.key(0))
  run = make_inversion(apply_fn, ob.class_logit(), optax.sgd(0.1), pz.pixels(), 8, SHAPE,
                       record_every=record_every, record_inputs=record_inputs)
  shapes = jax.eval_shape(run, params, jnp.arange(3), jax.ShapeDtypeStruct((3, 5), jax.random.key(0).dtype))
  assert result_bytes(3, 5, 8, SHAPE, 4, record_every, record_inputs) == \
      memory.tree_bytes(shapes) + 8 * 15


def test_progress_reports_every_step_once_over_chunks(x64):
  """The compiled loop reports progress through a host callback: the steps add up to S
  whether the restarts run in one call or in chunks, and the result does not change (to the
  rounding of another kernel, KERNEL_TOLERANCE)."""
  apply_fn, params = tiny_model(jax.random.key(0), dtype=jnp.float64)
  kw = dict(key=jax.random.key(4), input_shape=SHAPE, restarts=7, steps=20,
            optimizer=optax.adam(0.05), parameterization=pz.pixels())
  plain, _ = timed_invert(apply_fn, params, ob.class_log_prob(), jnp.arange(4), **kw)
  for device_bytes in (None, 1):
    reported = []
    run = jax.jit(make_inversion(apply_fn, ob.class_log_prob(), optax.adam(0.05), pz.pixels(), 20,
                                 SHAPE))
    need = memory.compiled_bytes(plan_restarts(run, params, jnp.arange(4), 3)[0]) \
        if device_bytes else None
    result, timing = timed_invert(apply_fn, params, ob.class_log_prob(), jnp.arange(4),
                                  on_steps=reported.append, device_bytes=need, **kw)
    assert (timing["chunks"] == 1) == (device_bytes is None)
    assert sum(reported) == pytest.approx(20) and len(reported) == 20 * timing["chunks"]
    np.testing.assert_allclose(result.inputs, plain.inputs, rtol=0, atol=KERNEL_TOLERANCE)


@pytest.mark.parametrize("block", [6, 1, 2])
def test_restarts_in_blocks_equal_one_block(x64, monkeypatch, block):
  """On a CPU the restarts may run in blocks, each block every step (so the progress reports
  come once a step from each block): the same images and histories as all the restarts
  stepping together, to the rounding of another kernel (KERNEL_TOLERANCE)."""
  apply_fn, params = tiny_model(jax.random.key(0), dtype=jnp.float64)
  kw = dict(key=jax.random.key(4), input_shape=SHAPE, restarts=6, steps=12,
            optimizer=optax.adam(0.05), parameterization=pz.pixels(), record_every=3,
            record_inputs=True)
  together, _ = timed_invert(apply_fn, params, ob.class_log_prob(), jnp.arange(4), **kw)
  monkeypatch.setattr(engine, "cpu_restart_block", lambda restart_bytes, targets, r: block)
  reported = []
  blocked, _ = timed_invert(apply_fn, params, ob.class_log_prob(), jnp.arange(4),
                            on_steps=reported.append, **kw)
  assert len(reported) == 12 * 6 // block and sum(reported) == pytest.approx(12)
  for field in InversionResult._fields:
    np.testing.assert_allclose(getattr(blocked, field), getattr(together, field), rtol=0,
                               atol=KERNEL_TOLERANCE, err_msg=field)


def test_restarts_that_an_objective_compares_stay_in_one_block(monkeypatch):
  apply_fn, params = tiny_model(jax.random.key(0))
  monkeypatch.setattr(engine, "CPU_BLOCK_BYTES", 1)
  monkeypatch.setattr(engine, "CPU_BLOCK_LANES", 1)
  reported = []
  for objective, calls in ((ob.class_log_prob(), 3), (ob.class_log_prob() + ob.diversity("h"), 1)):
    timed_invert(apply_fn, params, objective, jnp.arange(4), key=jax.random.key(4),
                 input_shape=SHAPE, restarts=3, steps=10, on_steps=reported.append)
    assert len(reported) == 10 * calls
    reported.clear()


@pytest.mark.parametrize("restart_bytes,targets,restarts,block", [
    (50, 10, 12, 12), (100, 10, 12, 6), (250, 10, 12, 4), (300, 10, 12, 3),
    (10 ** 6, 1, 12, 12),  # at least 20 lanes
    (10 ** 6, 10, 12, 2), (10 ** 6, 10, 7, 1), (10 ** 6, 4, 12, 4), (100, 10, 7, 7),
    (50, 10, 2 * 3 * 5 * 7 * 11 * 13 * 17 * 19 * 23, 19), (50, 10, 10 ** 9 + 7, 1)])
def test_a_block_is_the_most_restarts_that_divide_them_and_fit(monkeypatch, restart_bytes,
                                                               targets, restarts, block):
  monkeypatch.setattr(engine, "CPU_BLOCK_BYTES", 1000)
  monkeypatch.setattr(engine, "CPU_BLOCK_LANES", 20)
  assert engine.cpu_restart_block(restart_bytes, targets, restarts) == block


@pytest.mark.parametrize("width", [4, 300])
def test_lane_bytes_count_what_each_lane_adds_not_the_weights(width):
  """A lane of `tanh(x @ w)` adds its product and its tanh, never the weights all lanes share;
  a lane of the gradient also adds the gradient's values."""
  weights = jnp.ones((25, width))
  forward = lambda x: jnp.tanh(x @ weights)
  assert engine.lane_bytes(forward, jnp.ones((3, 25))) == 2 * 4 * width
  backward = engine.lane_bytes(jax.grad(lambda x: jnp.sum(forward(x))), jnp.ones((3, 25)))
  assert 4 * (2 * width + 25) < backward < 4 * 25 * width


def test_model_functions_may_return_outputs_alone_or_with_activations():
  apply_fn, params = tiny_model(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (3,) + SHAPE)
  out, acts = split_outputs(apply_fn(params, x))
  assert set(acts) == {"h", "h_pre"}
  np.testing.assert_array_equal(outputs_only(apply_fn)(params, x), out)
  bare = outputs_only(apply_fn)
  assert split_outputs(bare(params, x))[1] == {}
  with_acts = _run(apply_fn, params, ob.class_logit(), jnp.arange(4), restarts=2)
  without = _run(bare, params, ob.class_logit(), jnp.arange(4), restarts=2)
  np.testing.assert_array_equal(with_acts.inputs, without.inputs)


def test_objectives_that_compare_restarts_run_them_in_one_call(x64):
  """Diversity gathers a target's restarts: chunking would change what it compares, so over the
  memory limit the engine refuses rather than split them; without diversity it splits."""
  apply_fn, params = tiny_model(jax.random.key(0), dtype=jnp.float64)
  diverse = ob.class_log_prob() + ob.diversity("h")
  assert diverse.couples_restarts and diverse.target_kind == "class"
  kw = dict(key=jax.random.key(4), input_shape=SHAPE, restarts=6, steps=5,
            optimizer=optax.adam(0.05), parameterization=pz.pixels())
  run = jax.jit(make_inversion(apply_fn, diverse, optax.adam(0.05), pz.pixels(), 5, SHAPE))
  need = {r: memory.compiled_bytes(plan_restarts(run, params, jnp.arange(4), r)[0])
          for r in (2, 6)}
  assert need[2] < need[6]
  _, timing = timed_invert(apply_fn, params, ob.class_log_prob(), jnp.arange(4),
                           device_bytes=need[2], **kw)
  assert timing["chunks"] > 1
  with pytest.raises(JinvertError, match="the inversion of 4 targets x 6 restarts"):
    timed_invert(apply_fn, params, diverse, jnp.arange(4), device_bytes=need[2], **kw)
  _, timing = timed_invert(apply_fn, params, diverse, jnp.arange(4), **kw)
  assert timing["chunks"] == 1


def test_diversity_pushes_a_targets_restarts_apart_and_never_across_targets(x64):
  apply_fn, params = tiny_model(jax.random.key(0), dtype=jnp.float64)
  kw = dict(restarts=4, steps=40, optimizer=optax.adam(0.05), parameterization=pz.sigmoid())
  plain = _run(apply_fn, params, ob.class_log_prob(), jnp.arange(4), **kw)
  diverse = _run(apply_fn, params, ob.class_log_prob() + 2.0 * ob.diversity("h"), jnp.arange(4),
                 **kw)
  spread = lambda r: float(jnp.mean(jax.vmap(lambda x: jnp.mean(jnp.std(x, axis=0)))(r.inputs)))
  assert spread(diverse) > 1.2 * spread(plain)
  # targets are independent: target 0 alone gives what it gives among four
  alone = _run(apply_fn, params, ob.class_log_prob() + 2.0 * ob.diversity("h"), jnp.arange(1),
               **kw)
  np.testing.assert_allclose(alone.inputs[0], diverse.inputs[0], rtol=0, atol=1e-10)


def test_an_objective_reading_a_missing_layer_names_the_layers():
  apply_fn, params = tiny_model(jax.random.key(0))
  with pytest.raises(JinvertError, match="no layer 'conv9'; valid layer names: h_pre, h"):
    _run(apply_fn, params, ob.class_logit() + ob.channel("conv9", 0), jnp.arange(2))


def test_keep_best_keeps_each_targets_most_probable_restarts_in_every_field():
  """Against a per-target loop: the restarts whose final outputs give the target the highest
  probability, surest first, and the histories and inputs of those same restarts."""
  apply_fn, params = tiny_model(jax.random.key(0))
  targets = jnp.array([2, 0, 3])
  full = _run(apply_fn, params, ob.class_log_prob(), targets, restarts=6, steps=3,
              record_inputs=True)
  kept = keep_best(full, targets, 4)
  for t, target in enumerate(np.asarray(targets)):
    sureness = np.asarray(jax.nn.softmax(full.outputs[t]))[:, target]
    order = np.argsort(-sureness, kind="stable")[:4]
    assert len(set(sureness[order])) == 4  # no ties, so the order is one
    np.testing.assert_array_equal(kept.inputs[t], full.inputs[t][order])
    np.testing.assert_array_equal(kept.outputs[t], full.outputs[t][order])
    np.testing.assert_array_equal(kept.loss_history[:, t], full.loss_history[:, t][:, order])
    np.testing.assert_array_equal(kept.target_prob[:, t], full.target_prob[:, t][:, order])
    np.testing.assert_array_equal(kept.input_history[:, t], full.input_history[:, t][:, order])
  assert keep_best(full._replace(input_history=None), targets, 1).input_history is None


def test_keep_best_by_a_score_keeps_each_targets_highest_scoring_restarts():
  """Against a per-target loop: ranked by the score of the final input and outputs (here the
  target's logit less 20 x the mean pixel), which differs from the ranking by probability."""
  apply_fn, params = tiny_model(jax.random.key(0))
  targets = jnp.array([2, 0, 3])
  full = _run(apply_fn, params, ob.class_log_prob(), targets, restarts=6, steps=3)
  kept = keep_best(full, targets, 4, score=ob.class_logit() - 20.0 * ob.l1())
  moved = False
  for t, target in enumerate(np.asarray(targets)):
    score = np.asarray(full.outputs[t])[:, target] - 20.0 * np.abs(
        np.asarray(full.inputs[t])).mean((1, 2))
    order = np.argsort(-score, kind="stable")[:4]
    np.testing.assert_array_equal(kept.inputs[t], full.inputs[t][order])
    np.testing.assert_array_equal(kept.target_prob[:, t], full.target_prob[:, t][:, order])
    moved |= not np.array_equal(kept.inputs[t], keep_best(full, targets, 4).inputs[t])
  assert moved  # the score is not the probability under another name
  with pytest.raises(JinvertError, match="a score reads one final input and the model's "
                                         "outputs for it, not a hidden layer"):
    keep_best(full, targets, 4, score=ob.unit("h"))


def test_pooled_draws_are_the_best_of_every_recipes_own_draws():
  """`pooled` (objective, draws) pairs: each recipe draws its own restarts, from the key folded
  with its place, and the R that score highest of all are kept, as `keep_best` keeps them from
  the recipes' results joined in turn."""
  apply_fn, params = tiny_model(jax.random.key(0))
  targets, key = jnp.array([2, 0, 3]), jax.random.key(7)
  first, second = ob.class_log_prob(), ob.class_log_prob() - 5.0 * ob.l1()
  score = ob.class_logit() - 20.0 * ob.l1()
  kw = dict(input_shape=SHAPE, steps=4, record_inputs=True)
  picked, timing = timed_invert(apply_fn, params, first, targets, key=key, restarts=3, draws=1,
                                pooled=((second, 2),), score=score, **kw)
  own = [timed_invert(apply_fn, params, first, targets, key=key, restarts=3, **kw)[0],
         timed_invert(apply_fn, params, second, targets, key=jax.random.fold_in(key, 1),
                      restarts=6, **kw)[0]]
  expected = keep_best(pool(own), targets, 3, score=score)
  for got, want in zip(picked, expected):
    np.testing.assert_array_equal(got, want)
  assert picked.inputs.shape == (3, 3, *SHAPE) and timing["chunks"] == 2
  chosen = (np.asarray(picked.inputs).reshape(9, 1, -1)
            == np.asarray(own[1].inputs).reshape(1, 18, -1)).all(-1).any(-1)
  assert 0 < chosen.sum() < 9  # the pick takes from both recipes
  with pytest.raises(JinvertError, match="pooled objectives must read the same targets"):
    timed_invert(apply_fn, params, first, targets, key=key, restarts=3,
                 pooled=((ob.unit("h"), 1),), **kw)


@pytest.mark.parametrize("targets,keep,kind,message", [
    (jnp.array([2, 0, 3]), 7, "class", "keep must be from 1 to the 6 restarts, got 7"),
    (jnp.array([2, 0, 3]), 0, "class", "keep must be from 1 to the 6 restarts, got 0"),
    (jnp.ones((3, 4)), 2, "class", r"class targets must be a 1-D array of integers"),
    (jnp.array([2, 0, 3, 1]), 2, "class", "4 targets given for a result of 3"),
    (jnp.array([2, 0, 3]), 2, "unit", "ranks them by their target's probability; unit targets "
     "have none"),
])
def test_keep_best_refuses_what_it_cannot_rank(targets, keep, kind, message):
  apply_fn, params = tiny_model(jax.random.key(0))
  full = _run(apply_fn, params, ob.class_log_prob(), jnp.array([2, 0, 3]), restarts=6, steps=2)
  with pytest.raises(JinvertError, match=message):
    keep_best(full, targets, keep, kind)


@pytest.mark.parametrize("objective,targets", [
    (ob.class_log_prob(), jnp.array([2, 0, 3])),
    # vector targets rank by the probability of their largest entry's class
    (-ob.cross_entropy_to(), jax.nn.softmax(3.0 * jax.random.normal(jax.random.key(5), (3, 4)))),
])
def test_drawing_several_keeps_the_surest_of_the_restarts_one_call_draws(objective, targets):
  """`invert(restarts=2, draws=3)` returns, per target, the two of the six restarts that
  `invert(restarts=6)` draws from the same key whose final outputs give the target's class the
  highest probability, surest first, and their histories."""
  apply_fn, params = tiny_model(jax.random.key(0))
  full = _run(apply_fn, params, objective, targets, restarts=6, steps=8)
  drawn = _run(apply_fn, params, objective, targets, restarts=2, draws=3, steps=8)
  classes = np.asarray(targets if targets.ndim == 1 else targets.argmax(1))
  for t, c in enumerate(classes):
    sureness = np.asarray(jax.nn.softmax(full.outputs[t]))[:, c]
    order = np.argsort(-sureness, kind="stable")[:2]
    np.testing.assert_array_equal(drawn.inputs[t], full.inputs[t][order])
    np.testing.assert_array_equal(drawn.loss_history[:, t], full.loss_history[:, t][:, order])
  assert drawn.inputs.shape == (3, 2) + SHAPE


@pytest.mark.parametrize("objective,draws,message", [
    (ob.class_log_prob(), 0, "draws must be positive, got 0"),
    (ob.unit("h"), 2, "drawing 2 restarts for each one kept ranks them by their target's "
     "probability; unit targets have none"),
])
def test_draws_refused_where_nothing_ranks_them(objective, draws, message):
  apply_fn, params = tiny_model(jax.random.key(0))
  with pytest.raises(JinvertError, match=message):
    _run(apply_fn, params, objective, jnp.array([1, 0]), restarts=2, draws=draws, steps=2)
