import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

from jinvert import engine, memory, parameterizations
from jinvert.bench import products_bound, torch_reference, workload
from test_cli import assert_one_line_error, run_cli
from conftest import REPO, XLA_TEST_FLAGS, lone_process_cache

SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_enable_x64", True)  # float64: only the sharding may differ
    from jinvert import models, objectives as ob, parameterizations as pz
    from jinvert.engine import invert, timed_invert
    assert len(jax.devices()) == 4, jax.devices()
    spec = models.get_model("mnist-mlp")
    params = jax.tree.map(lambda a: a.astype(jnp.float64), spec.init_params(jax.random.key(0)))
    fn = models.apply_with_activations(spec.module())
    kw = dict(key=jax.random.key(3), input_shape=(28, 28), steps=10, optimizer=optax.adam(0.05),
              parameterization=pz.pixels())

    def check(targets, restarts, devices, chunks=1, **extra):
        single = invert(fn, params, ob.class_log_prob(), targets, restarts=restarts, shard=False,
                        **kw)
        split, timing = timed_invert(fn, params, ob.class_log_prob(), targets,
                                     restarts=restarts, **kw, **extra)
        assert timing["devices"] == devices and timing["chunks"] == chunks, timing
        assert len(split.inputs.sharding.device_set if chunks == 1 else [0] * devices) == devices
        np.testing.assert_allclose(split.inputs, single.inputs, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(split.loss_history, single.loss_history, rtol=1e-9)

    check(jnp.arange(10), 8, devices=4)            # 4 does not divide T: restarts split
    check(jnp.arange(4), 3, devices=4)             # targets split
    check(jnp.arange(10), 6, devices=1)            # neither divides: one device
    # XLA's estimate for 4 targets over 4 devices: 8.85 MB for 2 restarts, 8.97 MB for 3
    check(jnp.arange(4), 6, devices=4, chunks=3, device_bytes=8_900_000)  # targets split, chunked
    # split restarts cannot run in chunks: over the budget, one device takes all 8 (4.4 MB)
    check(jnp.arange(10), 8, devices=1, device_bytes=8_900_000)
    shard = invert(fn, params, ob.class_log_prob(), jnp.arange(10), restarts=8, shard=True, **kw)
    assert len(shard.inputs.sharding.device_set) == 4
    try:
        invert(fn, params, ob.class_log_prob(), jnp.arange(10), restarts=6, shard=True, **kw)
        raise SystemExit("6 restarts over 4 devices should be refused")
    except ValueError as e:
        assert "multiple of the 4 devices" in str(e)
    print("SHARDED-OK")
""")


def test_lanes_split_over_four_host_devices_equal_one_device(tmp_path):
  # each `invert` compiles its own program: from XLA's cache when another check ran it
  env = dict(os.environ, **lone_process_cache(tmp_path),
             XLA_FLAGS=f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=4")
  proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env,
                        cwd=REPO, timeout=300)
  assert "SHARDED-OK" in proc.stdout, proc.stderr[-2000:]


def _no_device_count() -> dict:
  """The environment with no CPU device count chosen (the suite's other XLA flags kept)."""
  env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
  return dict(env, XLA_FLAGS=XLA_TEST_FLAGS)


DEVICE_COUNT = textwrap.dedent("""
    import sys
    from jinvert import devices
    if sys.argv[1] == "started":
        import jax; jax.numpy.zeros(1)
    asked = devices.use_every_core()
    import jax
    print(asked, len(jax.devices("cpu")), devices.cores())
""")


@pytest.mark.parametrize("env, started, want", [
    ({}, False, "cores"),
    ({"JAX_NUM_CPU_DEVICES": "3"}, False, "None 3"),
    ({"XLA_FLAGS": f"{XLA_TEST_FLAGS} --xla_force_host_platform_device_count=3"}, False, "None 3"),
    ({}, True, "None 1"),
])
def test_use_every_core_unless_a_count_was_chosen(env, started, want):
  base = _no_device_count()
  proc = subprocess.run([sys.executable, "-c", DEVICE_COUNT, "started" if started else "fresh"],
                        capture_output=True, text=True, env={**base, **env}, cwd=REPO, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  asked, count, cores = proc.stdout.split()
  if want == "cores":
    assert asked == count == cores
  else:
    assert f"{asked} {count}" == want


def test_command_line_splits_the_lanes_over_a_device_per_core():
  base = _no_device_count()
  argv = [sys.executable, "-m", "jinvert", "bench", "--sizes", "2", "--restarts", "2", "--steps",
          "3", "--repeats", "1", "--no-references"]
  for env, want in (({}, len(os.sched_getaffinity(0))), ({"JAX_NUM_CPU_DEVICES": "1"}, 1)):
    proc = subprocess.run(argv, capture_output=True, text=True, env={**base, **env}, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["devices"] == want


def test_flop_count_is_forward_plus_backward_to_input():
  """2 x MACs, forward and back to the input: for a convolution, output positions x kernel
  size x input channels x output channels each way (LeNet-5: 28x28 padded to 32)."""
  mlp = workload.flops_per_image_step(workload.subject("mnist-mlp"))
  assert mlp == 4 * (784 * 256 + 256 * 256 + 256 * 10)
  lenet = workload.flops_per_image_step(workload.subject("lenet5"))
  assert lenet == 4 * (28 * 28 * 25 * 6 + 10 * 10 * 25 * 6 * 16 + 25 * 16 * 120 + 120 * 84
                       + 84 * 10)


def test_bench_prints_table_and_json(capsys):
  code, out, _ = run_cli(capsys, "bench", "--sizes", "2", "--restarts", "2", "--steps", "3",
                         "--repeats", "1", "--no-references")
  assert code == 0
  summary = json.loads(out.strip().splitlines()[-1])
  for key in ("backend", "device_kind", "restarts", "steps", "image_steps_per_s", "gflops",
              "matmul_peak_gflops", "peak_fraction", "compile_seconds", "ratios"):
    assert key in summary
  assert summary["ratios"]["torch_eager"] is None and summary["restarts"] == 2
  assert "| 2 |" in out and "1,075,200 FLOP" in out


def test_bench_bad_input(capsys):
  code, _, err = run_cli(capsys, "bench", "--steps", "0")
  assert_one_line_error(code, err, "argument --steps: must be a whole number from 1")
  code, _, err = run_cli(capsys, "bench", "--restarts", "8", "--largest-up-to", "4")
  assert_one_line_error(code, err, "must be at least the headline R (8)")


class _DeviceWithLimit:
  """Stands in for a GPU that reports a memory limit."""

  def __init__(self, bytes_limit):
    self.bytes_limit = bytes_limit

  def memory_stats(self):
    return {"bytes_limit": self.bytes_limit, "peak_bytes_in_use": 0}


def test_largest_restarts_stops_at_the_memory_limit():
  params = workload.subject("mnist-mlp")
  needs = {}
  for r in (2, 4, 8):
    fn, targets, keys = workload.workload(params, r, 2)
    needs[r] = memory.compiled_bytes(fn.lower(params.params, targets, keys).compile())
  assert needs[2] < needs[4] < needs[8]
  limit = (needs[4] + needs[8]) // 2
  logged = []
  found = workload.largest_restarts(params, 2, 2, 64, _DeviceWithLimit(limit), logged.append)
  assert found["restarts"] == 4 and found["compiled_bytes"] == needs[4]
  assert "R=8: needs" in logged[-1] and "free" in logged[-1]
  unbounded = workload.largest_restarts(params, 2, 2, 8, jax.devices("cpu")[0], logged.append)
  assert unbounded["restarts"] == 8
  assert workload.largest_restarts(params, 2, 2, 8, _DeviceWithLimit(1), logged.append) is None


def test_interleaved_rates_pair_each_round_and_time_only_the_second_pass():
  # per pass: a slow untimed pass (another timer's leftovers), then the timed one; drift
  slowdown = iter([50.0, 1.0, 50.0, 1.0, 50.0, 3.0, 50.0, 3.0, 50.0, 9.0, 50.0, 9.0])
  calls = []

  def timer(name, seconds_per_pass):
    def run():
      calls.append(name)
      return seconds_per_pass * next(slowdown)
    return run

  timers = {"jinvert": (100, timer("jinvert", 1.0)), "ref": (10, timer("ref", 2.0))}
  rates, ratios = workload.interleaved_rates(timers, rounds=3)
  assert calls == ["jinvert", "jinvert", "ref", "ref"] * 3
  assert rates == {"jinvert": 100 / 3.0, "ref": 10 / 6.0}
  assert ratios == {"jinvert": 1.0, "ref": 20.0}


@pytest.mark.parametrize("name", ["mnist-mlp", "mnist-cnn", "lenet5"])
def test_torch_references_compute_jinverts_step(name):
  """Each PyTorch reference (the convnets' twins in channels_last, BatchNorm folded), from
  jinvert's own starting images, lands on jinvert's images: none skips work (the images move
  far more than the tolerance)."""
  torch = pytest.importorskip("torch")
  model = workload.subject(name)
  differences = torch_reference.reference_differences(torch, model, restarts=2, steps=5,
                                                      device="cpu")
  assert set(differences) == {"torch_eager", "torch_compile"}
  assert max(differences.values()) < 1e-5, differences
  fn, targets, keys = workload.workload(model, 2, 5)
  moved = fn(model.params, targets, keys).inputs - engine.starting_inputs(
      parameterizations.pixels(), keys, (28, 28))
  assert float(jnp.max(jnp.abs(moved))) > 1e-2


def test_products_bound_times_the_steps_products():
  mlp = workload.subject("mnist-mlp")
  assert workload.product_shapes(mlp, 20) == [(1, 20, k, n) for k, n in (
      (784, 256), (256, 256), (256, 10), (10, 256), (256, 256), (256, 784))]
  bound = products_bound(mlp, 20, 3)
  assert bound["xla"] > 0 and bound["xla_split"] is None and bound["torch"] is None
  # mnist-cnn: each 3x3 convolution is one product of its patches, each way
  cnn = workload.product_shapes(workload.subject("mnist-cnn"), 10)
  assert (1, 10 * 28 * 28, 9, 16) in cnn and (1, 10 * 14 * 14, 9 * 16, 32) in cnn
  assert (1, 10 * 14 * 14, 32, 9 * 16) in cnn and (1, 10 * 28 * 28, 16, 9) in cnn


def test_bench_takes_a_zoo_convnet_or_an_onnx_file(tmp_path, capsys):
  from test_distill import _onnx_teacher
  _onnx_teacher(tmp_path / "t.onnx")
  code, out, err = run_cli(capsys, "bench", "--model", str(tmp_path / "t.onnx"), "--sizes", "2",
                           "--restarts", "2", "--steps", "3", "--repeats", "1")
  assert code == 0, err
  summary = json.loads(out.strip().splitlines()[-1])
  assert summary["model"] == "t" and summary["ratios"]["torch_eager"] is None
  assert "no PyTorch twin" in err
  code, _, err = run_cli(capsys, "bench", "--model", "vae")
  assert_one_line_error(code, err, "--model vae: an autoencoder model, not a classifier")
