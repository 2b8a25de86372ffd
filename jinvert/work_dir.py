"""A long run's finished pieces, kept so that a killed run resumes where it stopped.

A work dir holds `manifest.json` (what run it belongs to: the command, the teacher's sha256,
every argument that shapes the result, the seed) and one file per finished piece, each written
atomically (`jinvert.files`), so a kill at any moment leaves whole pieces or none. Started
again with the same arguments, a run reads the pieces it finds and computes the rest; each
piece depends only on its own keys and the state saved before it, so the result equals an
uninterrupted run's, bit for bit on one backend. A work dir of another run is refused.

In a run of several processes the folder is process 0's: it reads and writes it, and hands
what it read to the others (`share`), so every process skips the same pieces.

>>> import tempfile, numpy as np
>>> folder = tempfile.mkdtemp()
>>> work = WorkDir(folder, {"command": "distill", "seed": 0})
>>> work.cached("piece-0", lambda: {"images": np.ones(2)})["images"].tolist()
[1.0, 1.0]
>>> work.cached("piece-0", lambda: 1 / 0)["images"].tolist()   # found: not computed again
[1.0, 1.0]
>>> WorkDir(folder, {"command": "distill", "seed": 1})
Traceback (most recent call last):
...
jinvert.errors.JinvertError: --work-dir ... holds another run: seed 0 there, 1 here; ...
"""

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from jinvert import files
from jinvert.errors import JinvertError

MANIFEST = "manifest.json"


def file_sha256(path) -> str:
  """The sha256 of a file, read in blocks."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


class WorkDir:
  """The pieces of one run (see the module).

  Args:
    path: the folder (created if missing; an empty folder is taken).
    manifest: what identifies the run: JSON values only.
    writes: False in every process but process 0: it neither reads nor writes the folder.
    share: `fn(bytes or None) -> bytes or None`, process 0's bytes on every process
      (`jinvert.distributed.from_process_0`), in a run of several processes.

  Raises:
    JinvertError: the folder belongs to another run, holds other files, or cannot be used.
  """

  def __init__(self, path, manifest: dict, writes: bool = True, share=None):
    self.path, self.writes, self._share = Path(path), writes, share or (lambda data: data)
    self.manifest = json.loads(json.dumps(manifest))  # as it reads back
    state = self._share(self._state().encode() if writes else None).decode()
    if state == "file":
      raise JinvertError(f"--work-dir {path}: is a file, not a folder")
    if state == "foreign":
      raise JinvertError(f"--work-dir {path}: holds files but no {MANIFEST}: not a jinvert work "
                         "dir; give an empty or new folder")
    if state != "new":
      self._check(json.loads(state))
    elif writes:
      files.atomic_write_bytes(self.path / MANIFEST, json.dumps(self.manifest, indent=1).encode())

  def _state(self) -> str:
    """The folder as process 0 finds it: its manifest, or new, foreign or file."""
    found = self.path / MANIFEST
    if self.path.exists() and not self.path.is_dir():
      return "file"
    if found.is_file():
      return files.read_input(found, "work dir manifest").decode()
    return "foreign" if self.path.is_dir() and any(self.path.iterdir()) else "new"

  def _check(self, there: dict):
    if there == self.manifest:
      return
    keys = sorted(set(there) | set(self.manifest))
    differ = [k for k in keys if there.get(k) != self.manifest.get(k)]
    if "model_sha256" in differ:
      raise JinvertError(f"--work-dir {self.path} holds a run of another model (sha256 "
                         f"{str(there.get('model_sha256'))[:12]}..., this one "
                         f"{str(self.manifest.get('model_sha256'))[:12]}...); give another "
                         "folder, or delete it to start again")
    said = ", ".join(f"{k} {there.get(k)} there, {self.manifest.get(k)} here" for k in differ[:3])
    raise JinvertError(f"--work-dir {self.path} holds another run: {said}; rerun with its "
                       "arguments to resume it, or give another folder")

  def load(self, name: str) -> dict | None:
    """The arrays of the piece `name`, or None when it is not finished."""
    path = self.path / f"{name}.npz"
    data = files.read_input(path, "work dir piece") if self.writes and path.is_file() else None
    data = self._share(data)
    if data is None:
      return None
    try:
      with np.load(io.BytesIO(data), allow_pickle=False) as found:
        return {k: found[k] for k in found.files}
    except (ValueError, OSError) as e:
      raise JinvertError(f"--work-dir {self.path}: piece {path.name} is unreadable ({e}); "
                         "delete it to compute it again") from None

  def save(self, name: str, arrays: dict):
    """Writes the piece `name` atomically (process 0 alone)."""
    if self.writes:
      buffer = io.BytesIO()
      np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
      files.atomic_write_bytes(self.path / f"{name}.npz", buffer.getvalue())

  def cached(self, name: str, compute) -> dict:
    """The piece `name`: read if finished, else `compute()`d (a dict of arrays) and saved."""
    found = self.load(name)
    if found is None:
      found = {k: np.asarray(v) for k, v in compute().items()}
      self.save(name, found)
    return found
