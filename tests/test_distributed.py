"""Many processes and long runs: two local CPU processes (gloo) equal one process, only process
0 writes, a dead peer stops the other with one line, and a killed `distill --work-dir` resumes
to the same student."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jinvert import checkpoint, distributed, models, work_dir
from jinvert.cli import cluster
from jinvert.errors import JinvertError
from jinvert.files import Outputs
from conftest import lone_process_cache
from contract import save

JOIN = 120  # seconds a test waits for a run of two processes (both compile on 2 cores)


@pytest.fixture
def folder(tmp_path, isolated_env):
  save(tmp_path / "teacher.msgpack", "mnist-mlp", dataset="mnist")
  return tmp_path


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices))


def _start(argv, folder, process=None, port=None, devices=2):
  """`jinvert argv` as process `process` of 2 on one device, or alone on `devices` devices.
  A test's processes alone share XLA's persistent cache (in the test's folder): a resumed or
  repeated run loads what an earlier one compiled. Two processes at once do not."""
  cluster_flags = [] if process is None else [
      "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(process)]
  env = _env(devices if process is None else 1)
  if process is None:
    env.update(lone_process_cache(folder / "xla-cache"))
  return subprocess.Popen([sys.executable, "-m", "jinvert", *map(str, argv), *cluster_flags],
                          cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _finish(proc, timeout=JOIN):
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def _two(argv, folder, outs=("out0", "out1")):
  """Runs `argv` + `--out OUT_I` as two processes; returns both (code, stdout, stderr)."""
  port = _free_port()
  procs = [_start([*argv, "--out", outs[i]], folder, i, port) for i in range(2)]
  return [_finish(p) for p in procs]


def _one(argv, folder, out="single"):
  return _finish(_start([*argv, "--out", out], folder))


def _summary(stdout):
  return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("preset", ["raw", "data-free"])
def test_invert_on_two_processes_equals_one_and_only_process_0_writes(folder, preset):
  argv = ["invert", "teacher.msgpack", "--targets", "0-9", "--restarts", "8", "--steps", "50",
          "--preset", preset, "--seed", "0"]
  (code0, out0, err0), (code1, out1, err1) = _two(argv, folder, ("two.npz", "other.npz"))
  assert (code0, code1) == (0, 0), (err0[-2000:], err1[-2000:])
  summary = _summary(out0)
  assert summary["devices"] == 2 and summary["processes"] == 2
  assert out1 == "" and not (folder / "other.npz").exists()  # process 1 prints and writes nothing
  code, out, err = _one(argv, folder, "one.npz")
  assert code == 0, err[-2000:]
  assert _summary(out)["processes"] == 1
  two, one = np.load(folder / "two.npz"), np.load(folder / "one.npz")
  # the same lanes on the same kind of device: each lane's arithmetic is the same, whichever
  # process runs it
  np.testing.assert_allclose(two["images"], one["images"], rtol=0, atol=1e-5)
  np.testing.assert_allclose(two["outputs"], one["outputs"], rtol=1e-5, atol=1e-5)


def test_distill_on_two_processes_equals_one_within_float32_rounding(folder):
  """The transfer set is the same lanes as one process's; the student's gradients are summed
  across the processes (each takes half of every batch), so they differ from one process's in
  the order of a float32 sum. Training amplifies that by what the host's kernels round: after
  100 Adam steps 5.7e-6 on an AVX-512 Xeon, 0.025-0.033 on an AVX2 EPYC, where one process on
  one device differs from one on two by 0.028-0.029, and a student of seed 1 by 0.30. So the
  tolerance is that difference, measured here, and both stay far below another start's (a
  fresh student of another key: what a run from a wrong key would be near)."""
  argv = ["distill", "teacher.msgpack", "--student", "mnist-mlp", "--images", "200", "--steps",
          "100", "--seed", "0"]
  (code0, out0, err0), (code1, out1, err1) = _two(argv, folder, ("two.msgpack", "other.msgpack"))
  assert (code0, code1) == (0, 0), (err0[-2000:], err1[-2000:])
  assert _summary(out0)["processes"] == 2 and out1 == ""
  assert not (folder / "other.msgpack").exists()
  assert _finish(_start([*argv, "--out", "one.msgpack"], folder))[0] == 0
  assert _finish(_start([*argv, "--out", "dev1.msgpack"], folder, devices=1))[0] == 0
  two, one, dev1 = (checkpoint.load_checkpoint(folder / f)[0] for f in
                    ("two.msgpack", "one.msgpack", "dev1.msgpack"))
  other_start = models.get_model("mnist-mlp").init_params(jax.random.key(1))
  worst = lambda a, b: max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)))
  rounding = max(1e-4, worst(dev1, one))  # another order of the same float32 sums
  assert worst(two, one) <= 3 * rounding
  assert worst(other_start, one) > 5 * max(worst(two, one), rounding)


def _wait_for(path, proc, timeout=JOIN):
  deadline = time.monotonic() + timeout
  while not path.exists():
    assert proc.poll() is None, proc.communicate()
    assert time.monotonic() < deadline, f"{path} never appeared"
    time.sleep(0.1)


@pytest.mark.parametrize("killed", [1, 0])
def test_a_killed_process_stops_the_other_within_60_s_with_one_line(folder, killed):
  """Found by a collective that fails at once, or by the coordinator's missed heartbeats
  (`distributed.HEARTBEAT_SECONDS`): either way one line, and nothing written."""
  port = _free_port()
  argv = ["distill", "teacher.msgpack", "--student", "mnist-mlp", "--images", "4000", "--steps",
          "36000", "--work-dir", "work"]
  procs = [_start([*argv, "--out", f"student{i}.msgpack"], folder, i, port) for i in range(2)]
  _wait_for(folder / "work" / work_dir.MANIFEST, procs[0])  # both joined, the work begun
  procs[killed].send_signal(signal.SIGKILL)
  t0 = time.monotonic()
  code, out, err = _finish(procs[1 - killed], timeout=90)
  assert time.monotonic() - t0 < 60
  assert code != 0 and out == ""
  assert err.count("\n") == 1 and "died or was killed" in err, err
  assert f"process {1 - killed} of 2" in err and "Traceback" not in err, err
  procs[killed].wait()
  assert not list(folder.glob("student*.msgpack"))


def test_an_unreachable_coordinator_is_one_clear_error():
  port = _free_port()  # nothing listens there
  with pytest.raises(JinvertError, match=f"cannot reach the coordinator 127.0.0.1:{port}"):
    distributed.wait_for(f"127.0.0.1:{port}", timeout=1)
  with pytest.raises(JinvertError, match="HOST:PORT"):
    distributed.parse_address("4321")


def test_the_runtime_log_becomes_one_line():
  """What JAX's runtime writes when a peer or the coordinator dies (from real runs)."""
  heartbeat = ("E1129 23:14:45.735702 3818 coordination_service.cc:1549] Use error polling to "
               "propagate the following error to all tasks: UNAVAILABLE: The following tasks are "
               "unhealthy (stopped sending heartbeats):\n1\nThe tasks have crashed.")
  coordinator = ("F1129 23:14:58.166587 3909 client.h:80] Terminating process because the JAX "
                 "distributed service detected fatal errors.\nRPC: /xla.coordination."
                 "CoordinationService/PollForError:\n:UNKNOWN:Error received from peer "
                 "{grpc_status:14, grpc_message:\"Socket closed\"}")
  joined = ("F1129 23:12:30.798415 3578 client.h:80] Terminating process ... absl::Status: "
            "DEADLINE_EXCEEDED: Deadline Exceeded\nRPC: /xla.coordination.CoordinationService/"
            "RegisterTask")
  assert cluster.diagnosis(heartbeat, "h:1").startswith("process 1 stopped responding")
  assert "lost the coordinator h:1" in cluster.diagnosis(coordinator, "h:1")
  assert "not every process joined h:1" in cluster.diagnosis(joined, "h:1")
  assert "F1129" in cluster.diagnosis("F1129 something else", None)


def test_outputs_of_a_process_that_does_not_write_write_nothing(tmp_path):
  outputs = Outputs(writes=False)
  out = outputs.add(tmp_path / "no" / "such" / "folder.npz", "--out")
  outputs.commit({out: b"x"})
  assert list(tmp_path.iterdir()) == []


def _params(path):
  return jax.tree.leaves(checkpoint.load_checkpoint(path)[0])


def test_distill_killed_in_synthesis_and_in_training_resumes_to_the_same_student(folder):
  """Killed once the transfer set's second chunk is kept, then, resumed, once the student's
  first state is: the run resumed again ends with the student of a run never stopped."""
  argv = ["distill", "teacher.msgpack", "--student", "mnist-mlp", "--images", "300",
          "--steps", "900", "--save-every", "300", "--seed", "0"]
  code, _, err = _one([*argv, "--work-dir", "whole"], folder, "whole.msgpack")
  assert code == 0, err[-2000:]
  kept = sorted(p.name for p in (folder / "whole").iterdir())
  chunks = [k for k in kept if k.startswith("round0-images-")]
  assert len(chunks) > 2 and "round0-student.npz" in kept, kept
  work = folder / "work"
  for sign in (chunks[1], "round0-student.npz"):
    proc = _start([*argv, "--work-dir", work, "--out", "resumed.msgpack"], folder)
    _wait_for(work / sign, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (folder / "resumed.msgpack").exists()  # --out comes only at the end
    kept = sorted(p.name for p in work.iterdir())
    assert work_dir.MANIFEST in kept and not [k for k in kept if k.startswith(".")], kept
  assert set(chunks) <= set(kept)  # killed in training: the whole transfer set was kept
  code, out, err = _one([*argv, "--work-dir", work], folder, "resumed.msgpack")
  assert code == 0, err[-2000:]
  for a, b in zip(_params(folder / "whole.msgpack"), _params(folder / "resumed.msgpack")):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_work_dir_of_another_run_is_refused(tmp_path):
  run = {"command": "distill", "model_sha256": "ab" * 32, "images": 200, "seed": 0}
  work_dir.WorkDir(tmp_path / "w", run).save("piece", {"x": np.arange(3)})
  with pytest.raises(JinvertError, match="images 200 there, 400 here"):
    work_dir.WorkDir(tmp_path / "w", dict(run, images=400))
  with pytest.raises(JinvertError, match="another model"):
    work_dir.WorkDir(tmp_path / "w", dict(run, model_sha256="cd" * 32))
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("mine")
  with pytest.raises(JinvertError, match="not a jinvert work dir"):
    work_dir.WorkDir(tmp_path / "mine", run)
  again = work_dir.WorkDir(tmp_path / "w", run)
  assert again.load("piece")["x"].tolist() == [0, 1, 2] and again.load("other") is None


def test_a_distill_work_dir_of_another_student_recipe_is_refused(folder, monkeypatch, capsys):
  """The zoo's student recipe is not an argument, yet it shapes the student: a folder kept
  under one recipe is not resumed under another."""
  import dataclasses
  from jinvert import models
  from jinvert.cli import main
  monkeypatch.chdir(folder)
  argv = ["distill", "teacher.msgpack", "--student", "mnist-mlp", "--images", "20", "--steps",
          "2", "--preset", "noise", "--work-dir", "work", "--out", "s.msgpack"]
  assert main(argv) == 0
  capsys.readouterr()
  spec = models.REGISTRY["mnist-mlp"]
  monkeypatch.setitem(models.REGISTRY, "mnist-mlp", dataclasses.replace(spec, distill={
      **spec.distill, "noise": 0.05}))
  assert main(argv) == 2
  err = capsys.readouterr().err
  assert "holds another run: student_recipe" in err and "'noise': 0.05" in err, err


def test_invert_in_chunks_resumes_from_its_work_dir(folder, monkeypatch, capsys):
  """A memory limit splits the restarts into chunks; one chunk lost is computed again, and the
  images are those of a run that was never stopped."""
  from jinvert.cli import main
  monkeypatch.chdir(folder)
  monkeypatch.setenv("JINVERT_MEMORY_LIMIT", "4000000")
  argv = ["invert", "teacher.msgpack", "--targets", "0-9", "--restarts", "64", "--steps", "60",
          "--preset", "raw", "--work-dir", "work"]
  assert main([*argv, "--out", "a.npz"]) == 0
  assert json.loads(capsys.readouterr().out.splitlines()[-1])["chunks"] > 1
  chunks = sorted((folder / "work").glob("restarts-*.npz"))
  assert len(chunks) > 1
  chunks[1].unlink()
  assert main([*argv, "--out", "b.npz"]) == 0
  assert chunks[1].exists()
  np.testing.assert_array_equal(np.load(folder / "a.npz")["images"],
                                np.load(folder / "b.npz")["images"])


@pytest.mark.parametrize("flags, fragment", [
    (["--num-processes", "2"], "needs --coordinator HOST:PORT, --num-processes N and --process-id"),
    (["--coordinator", "127.0.0.1:9", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be from 0 to 1"),
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
])
def test_flags_that_do_not_describe_a_run_are_one_line(folder, flags, fragment):
  proc = subprocess.run([sys.executable, "-m", "jinvert", "invert", "teacher.msgpack", "--out",
                         "x.npz", *flags], cwd=folder, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2 and proc.stdout == ""
  assert proc.stderr.count("\n") == 1 and fragment in proc.stderr, proc.stderr
  assert not (folder / "x.npz").exists()
