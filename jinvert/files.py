"""Atomic file writes: an interrupted run never leaves a half-written file."""

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path, data: bytes) -> Path:
  """Writes `data` to `path` through a temporary file and a rename.

  Args:
    path: destination; its parent folders are created.
    data: the whole file content.

  Returns:
    The destination as a Path.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make results unreadable to others
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  return path


def atomic_write_with(path, write) -> Path:
  """Calls `write(file_object)` on a temporary file, then renames it to `path`.

  For writers that want a file object (np.savez, matplotlib's savefig).
  """
  import io
  buffer = io.BytesIO()
  write(buffer)
  return atomic_write_bytes(path, buffer.getvalue())
