"""Writing files safely: outputs checked before any work, staged unseen, committed together.

A command declares its outputs first (`Outputs.add`), which checks each path: not empty, not a
folder or a device, not under a file, a name the file system takes, a folder it may write in,
never one of the command's inputs, never another output. Its results are then staged in files
that have no name (Linux's O_TMPFILE), so a crash or a SIGKILL while writing leaves nothing
behind, and committed by linking each into place (or, to replace an existing file, linking it
under a temporary name and renaming it over, which replaces atomically). SIGTERM and SIGINT
wait until the commit is over. Where O_TMPFILE is missing (macOS, some file systems) a named
temporary file stands in, removed on any exception.

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> outputs = Outputs(inputs=[(os.path.join(folder, "model.msgpack"), "MODEL")])
>>> out = outputs.add(os.path.join(folder, "runs", "result.npz"), "--out")   # checked, not written
>>> outputs.add(os.path.join(folder, "model.msgpack"), "--png")
Traceback (most recent call last):
...
jinvert.errors.JinvertError: --png ... is also the input MODEL; writing it would destroy the input, choose another path
>>> _ = outputs.commit({out: b"the results"})                               # the work is done
>>> open(out, "rb").read()
b'the results'
"""

import contextlib
import ctypes
import errno
import functools
import io
import os
import secrets
import signal
import stat
import threading
from pathlib import Path

from jinvert.errors import JinvertError

_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400
_TEMP_PREFIX = ".jinvert-"


@functools.cache
def _libc():
  return ctypes.CDLL(None, use_errno=True)


def _linkat(fd: int, dest: Path):
  """Gives the unnamed file open as `fd` the name `dest` (fails if `dest` exists)."""
  if _libc().linkat(_AT_FDCWD, f"/proc/self/fd/{fd}".encode(), _AT_FDCWD, os.fsencode(dest),
                 _AT_SYMLINK_FOLLOW) != 0:
    code = ctypes.get_errno()
    raise OSError(code, os.strerror(code), str(dest))


def _unnamed_file(folder: Path):
  """An O_TMPFILE descriptor in `folder`, or None where the system has none."""
  if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
    return None
  try:
    return os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o666 & ~_umask())
  except OSError as e:
    if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
      return None  # the file system lacks O_TMPFILE: fall back to a named temporary
    raise


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _temp_name(folder: Path) -> Path:
  # short and fixed-length, so a 255-byte destination name still leaves room
  return folder / f"{_TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.tmp"


def _write_fd(fd: int, data: bytes):
  view = memoryview(data)
  while view:
    view = view[os.write(fd, view):]
  os.fsync(fd)


def _place(fd: int, path: Path):
  """Links the staged file `fd` into place at `path`, replacing what is there atomically."""
  try:
    _linkat(fd, path)
    return
  except FileExistsError:
    pass
  temp = _temp_name(path.parent)
  _linkat(fd, temp)
  try:
    os.replace(temp, path)
  except BaseException:
    temp.unlink(missing_ok=True)
    raise


def _write_named(path: Path, data: bytes):
  temp = _temp_name(path.parent)
  fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_umask())
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temp, path)
  except BaseException:
    temp.unlink(missing_ok=True)
    raise


@contextlib.contextmanager
def _signals_deferred():
  """Holds SIGTERM and SIGINT until the block ends, then delivers them."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  caught, previous = [], {}

  def hold(signum, frame):
    caught.append(signum)

  for signum in (signal.SIGTERM, signal.SIGINT):
    previous[signum] = signal.signal(signum, hold)
  try:
    yield
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    for signum in dict.fromkeys(caught):
      signal.raise_signal(signum)


def _created_parents(path: Path) -> list:
  """Creates the missing folders above `path`; returns them, outermost first."""
  missing = []
  parent = path.parent
  while not parent.exists():
    missing.append(parent)
    parent = parent.parent
  for folder in reversed(missing):
    folder.mkdir()
  return list(reversed(missing))


def commit(files: dict):
  """Writes every `{path: bytes}` entry, all or nothing as far as a failure while writing goes.

  Every file is staged (written and synced, unnamed) before any is placed; the placing, a link
  or a rename per file, runs with SIGTERM and SIGINT held. Missing parent folders are created,
  and removed again if staging fails.

  Returns:
    The paths written, as Paths.
  """
  files = {Path(p): data for p, data in files.items()}
  created, staged, named = [], [], []
  try:
    for path in files:
      created += _created_parents(path)
    for path, data in files.items():
      fd = _unnamed_file(path.parent)
      if fd is None:
        named.append(path)
        continue
      staged.append((fd, path))
      _write_fd(fd, data)
    with _signals_deferred():
      for fd, path in staged:
        _place(fd, path)
      for path in named:
        _write_named(path, files[path])
  except BaseException:
    for folder in reversed(created):
      with contextlib.suppress(OSError):
        folder.rmdir()
    raise
  finally:
    for fd, _ in staged:
      os.close(fd)
  return list(files)


def atomic_write_bytes(path, data: bytes) -> Path:
  """Writes `data` to `path` atomically (see `commit`); creates missing parent folders."""
  return commit({path: data})[0]


def atomic_write_with(path, write) -> Path:
  """Calls `write(file_object)` on an in-memory buffer, then writes it to `path` atomically.

  For writers that want a file object (np.savez, matplotlib's savefig).
  """
  buffer = io.BytesIO()
  write(buffer)
  return atomic_write_bytes(path, buffer.getvalue())


def _nearest_existing(path: Path) -> Path:
  while not path.exists() and not path.is_symlink():
    path = path.parent
  return path


def _same_file(a: Path, b: Path) -> bool:
  try:
    return a.exists() and b.exists() and os.path.samefile(a, b)
  except OSError:
    return False


def check_output_path(text, flag: str) -> Path:
  """Checks that `text` can be written as a new or replaced regular file, without writing it.

  Raises:
    JinvertError: naming `flag` and what is wrong with the path.
  """
  if text is None or not str(text).strip():
    raise JinvertError(f"{flag}: the path is empty or blank")
  if "\0" in str(text):
    raise JinvertError(f"{flag}: the path contains a NUL byte")
  path = Path(os.path.abspath(os.fspath(text)))
  if path.name in ("", ".", ".."):
    raise JinvertError(f"{flag} {text}: names a folder, not a file")
  for part in path.parts:  # before any stat: the kernel refuses names over NAME_MAX outright
    if len(os.fsencode(part)) > 255:
      raise JinvertError(f"{flag}: the name {part[:40]!r}... is {len(os.fsencode(part))} bytes, "
                         "over this file system's 255")
  try:
    mode = path.stat().st_mode if path.exists() else None
    if mode is not None and stat.S_ISDIR(mode):
      raise JinvertError(f"{flag} {text}: is a folder; give a file name inside it")
    if mode is not None and not stat.S_ISREG(mode):
      raise JinvertError(f"{flag} {text}: is not a regular file (a device, pipe or socket)")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
      raise JinvertError(f"{flag} {text}: {folder} is a file, not a folder")
    name_max = os.pathconf(folder, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    for part in path.relative_to(folder).parts:
      if len(os.fsencode(part)) > name_max:
        raise JinvertError(f"{flag}: the name {part[:40]!r}... is {len(os.fsencode(part))} bytes, "
                           f"over this file system's {name_max}")
    _probe_writable(folder)
  except OSError as e:
    raise JinvertError(f"{flag} {text}: cannot write there ({e.strerror or e})") from None
  return path


def _probe_writable(folder: Path):
  """Raises OSError unless a file can be created in `folder`; leaves nothing behind."""
  fd = _unnamed_file(folder)
  if fd is not None:
    os.close(fd)
    return
  temp = _temp_name(folder)
  os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
  temp.unlink()


class Outputs:
  """The files one command will write: checked before any work, written together at the end.

      outputs = Outputs(inputs=[args.checkpoint])
      out = outputs.add(args.out, "--out")
      ...                                    # the work
      outputs.commit({out: npz_bytes})

  Args:
    inputs: the command's input files; no output may be one of them.
    writes: False in a process that computes but does not write (a multi-process run's others:
      their paths are process 0's, on process 0's machine); `add` and `commit` then do nothing.
  """

  def __init__(self, inputs=(), writes: bool = True):
    self._inputs = [(Path(p), flag) for p, flag in inputs if p]
    self._outputs = {}
    self.writes = writes

  def add(self, text, flag: str) -> Path:
    """Checks one output path (see `check_output_path`) against the inputs and the other
    outputs; returns it as given, as a Path."""
    if not self.writes:
      return Path(text)
    path = check_output_path(text, flag)
    for other, other_flag in self._inputs:
      if Path(os.path.abspath(other)) == path or _same_file(other, path):
        raise JinvertError(f"{flag} {text} is also the input {other_flag}; writing it would "
                           "destroy the input, choose another path")
    for other, other_flag in self._outputs.items():
      if other == path or _same_file(other, path):
        raise JinvertError(f"{flag} {text} is the same file as {other_flag}; give each output "
                           "its own path")
    self._outputs[path] = flag
    return Path(text)

  def commit(self, files: dict) -> list:
    """Writes `{declared path: bytes}` together (see `commit`)."""
    if not self.writes:
      return [Path(p) for p in files]
    unknown = [str(p) for p in files if Path(os.path.abspath(p)) not in self._outputs]
    if unknown:
      raise ValueError(f"outputs never declared: {unknown}")
    return commit(files)


# The largest input file read whole: protobuf's own limit for one message (an ONNX model larger
# than this keeps its weights in external data, which is bounded by memory instead).
MAX_INPUT_BYTES = 2 ** 31 - 1


def input_size(path, what: str) -> int:
  """The size of an input file, which must be a regular file (not a folder, a device such as
  /dev/zero, a FIFO or a socket): checked without opening it, so a FIFO cannot block."""
  path = Path(path)
  try:
    mode = path.stat()
  except FileNotFoundError:
    raise JinvertError(f"{path}: no such {what}") from None
  except OSError as e:
    raise JinvertError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
  if stat.S_ISDIR(mode.st_mode):
    raise JinvertError(f"{path}: is a folder, not a {what}")
  if not stat.S_ISREG(mode.st_mode):
    raise JinvertError(f"{path}: is not a regular file (a device, FIFO or socket), not a {what}")
  return mode.st_size


def read_input(path, what: str, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
  """The bytes of an input file from anyone: a regular file, its size checked against
  `max_bytes` before anything is read (a sparse file claims no less than it holds).

  Raises:
    JinvertError: naming `what`: a missing, unreadable or irregular file, or one over the
      ceiling.
  """
  path = Path(path)
  size = input_size(path, what)
  if size > max_bytes:
    raise JinvertError(f"{path}: {size:,} bytes, over the {max_bytes:,}-byte ceiling for a "
                       f"{what}")
  try:
    # O_NONBLOCK: a file swapped for a FIFO after the check still cannot block
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
      if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        raise JinvertError(f"{path}: is not a regular file, not a {what}")
      data = f.read(max_bytes + 1)
  except OSError as e:
    raise JinvertError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
  if len(data) > max_bytes:
    raise JinvertError(f"{path}: grew past the {max_bytes:,}-byte ceiling while read")
  return data


def read_range(path, offset: int, length: int, what: str) -> bytes:
  """`length` bytes at `offset` of a regular file whose size was checked to hold them."""
  try:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
      if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise JinvertError(f"{path}: is not a regular file, not a {what}")
      data = os.pread(fd, length, offset)
    finally:
      os.close(fd)
  except OSError as e:
    raise JinvertError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
  if len(data) != length:
    raise JinvertError(f"{path}: the {what} is truncated: {len(data):,} of {length:,} bytes at "
                       f"offset {offset:,}")
  return data


def read_npy(path, flag: str, max_bytes: int = 2 ** 30):
  """Reads one numeric `.npy` array given on the command line, never unpickling.

  The file is memory-mapped first, so a header that claims more than the file holds, or more
  than `max_bytes`, is refused before anything is read into memory.

  Raises:
    JinvertError: a missing or unreadable file, an `.npz` archive, a non-numeric dtype, a
      truncated file or one over `max_bytes`.
  """
  import numpy as np

  try:
    input_size(path, "file")  # a regular file: np.load would block on a FIFO
  except JinvertError as e:
    raise JinvertError(f"{flag} {e}") from None
  try:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
  except FileNotFoundError:
    raise JinvertError(f"{flag} {path}: no such file") from None
  except (OSError, ValueError, EOFError) as e:
    raise JinvertError(f"{flag} {path}: not a readable .npy array "
                       f"({str(e).splitlines()[0][:100] if str(e) else type(e).__name__})") from None
  if not isinstance(array, np.ndarray):  # np.load hands back an NpzFile for archives
    array.close()
    raise JinvertError(f"{flag} {path}: an .npz archive; give a single .npy array (np.save)")
  if array.dtype.kind not in "iuf":
    raise JinvertError(f"{flag} {path}: holds {array.dtype} values; it must hold numbers")
  if array.nbytes > max_bytes:
    raise JinvertError(f"{flag} {path}: {array.nbytes:,} bytes, over the {max_bytes:,}-byte "
                       "ceiling")
  array = np.array(array)
  if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
    raise JinvertError(f"{flag} {path}: holds NaN or inf")
  return array
