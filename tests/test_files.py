"""Files: outputs are staged unseen and placed together: no failure or kill leaves half a file."""

import os

import numpy as np
import pytest

from jinvert import files
from contract import save


def test_staging_leaves_nothing_when_a_write_fails(tmp_path, monkeypatch):
  (tmp_path / "a").write_bytes(b"old a")
  calls = []

  def fail_second(fd, data):
    calls.append(fd)
    if len(calls) == 2:
      raise OSError(28, "No space left on device")
    os.write(fd, data)

  monkeypatch.setattr(files, "_write_fd", fail_second)
  with pytest.raises(OSError):
    files.commit({tmp_path / "a": b"new a", tmp_path / "new" / "b": b"new b"})
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
  assert (tmp_path / "a").read_bytes() == b"old a"


def _outputs_intact(folder, old):
  """Each output holds its old bytes or a complete new file; no temporary is left."""
  names = sorted(p.name for p in folder.iterdir())
  assert names == ["mlp.msgpack", "old.npz", "old.png"], names
  npz, png = (folder / "old.npz").read_bytes(), (folder / "old.png").read_bytes()
  if npz != old["npz"]:
    with np.load(folder / "old.npz") as f:
      assert f["images"].shape == (10, 2, 28, 28)
  assert png == old["png"] or png.startswith(b"\x89PNG") and png.endswith(b"IEND\xaeB`\x82")


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGKILL"])
def test_killed_at_any_point_leaves_outputs_intact(tmp_path, signum):
  import signal
  import subprocess
  import sys
  import time
  save(tmp_path / "mlp.msgpack", "mnist-mlp", dataset="mnist")
  old = {"npz": b"an earlier result", "png": b"an earlier picture"}
  argv = [sys.executable, "-m", "jinvert", "invert", "mlp.msgpack", "--preset", "raw",
          "--steps", "20", "--restarts", "2", "--out", "old.npz", "--png", "old.png"]
  t0 = time.perf_counter()
  subprocess.run(argv, cwd=tmp_path, check=True, capture_output=True)
  duration = time.perf_counter() - t0
  for fraction in (0.5, 0.85, 0.95):
    (tmp_path / "old.npz").write_bytes(old["npz"])
    (tmp_path / "old.png").write_bytes(old["png"])
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(fraction * duration)
    proc.send_signal(getattr(signal, signum))
    proc.wait(timeout=60)
    _outputs_intact(tmp_path, old)


def test_ctrl_c_exits_130_at_once_in_one_line_with_nothing_written(tmp_path):
  """SIGINT while distillation works (its compiled calls dispatched asynchronously, reporting
  progress through host callbacks), or still importing: exit 130 at once, one line, no output.
  A process that went through Python's shutdown instead crashed in 2 of 12 runs (an XLA compile
  worker the interrupt left running touched the client the shutdown had destroyed); a
  KeyboardInterrupt raised into jax's garbage-collection callback was ignored and the run went
  on (sent 0.2 s in); one raised during the imports left a traceback (0.4 s in)."""
  import signal
  import subprocess
  import sys
  import time
  save(tmp_path / "t.msgpack", "mnist-mlp", dataset="mnist")
  argv = [sys.executable, "-m", "jinvert", "distill", "t.msgpack", "--student", "mnist-mlp",
          "--images", "2000", "--steps", "200000", "--out", "s.msgpack"]
  for delay in (0.2, 0.4, 1.0, 4.0, 6.0, 8.0):
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    t0 = time.perf_counter()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err[-500:])
    assert time.perf_counter() - t0 < 10
    assert err.splitlines() == ["jinvert distill: error: interrupted; no output was written"]
    assert not (tmp_path / "s.msgpack").exists()
