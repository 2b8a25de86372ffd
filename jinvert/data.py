"""Datasets by name: MNIST and Fashion-MNIST from the standard IDX files, and seed 004's points.

`load_dataset(name)` returns any dataset in `DATASETS`. The IDX datasets are found locally or
downloaded; generated ones (seed 004's 100 points) are drawn from a `jax.random` key; derived
ones (Colored MNIST) are computed from the MNIST files, deterministically, and never stored.

>>> points = load_dataset("seed004-linear")
>>> points.train_images.shape, points.train_labels.shape
((100, 1), (100,))
>>> DATASETS["mnist"].input_shape
(28, 28)

Lookup order for an IDX dataset NAME (`mnist` or `fashion-mnist`):
  1. an explicit directory (`data_dir=` / `--data-dir`), holding NAME/ or the files themselves;
  2. `$JINVERT_DATA/NAME/`;
  3. the user cache, `~/.cache/jinvert/NAME/` (`$XDG_CACHE_HOME` respected);
  4. for Fashion-MNIST, Debian's `dataset-fashion-mnist` folder `/usr/share/datasets/fashion-mnist`;
  5. a download from the public mirrors into the cache, each file checked against its
     published SHA-256 and written atomically (skipped when `JINVERT_OFFLINE=1`).
Each file may be gzipped (`*.gz`) or raw.
"""

import gzip
import hashlib
import io
import math
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jinvert.errors import JinvertError
from jinvert.files import atomic_write_bytes

SPLITS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the uncompressed files, as published with each dataset.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
}

DEBIAN_FOLDERS = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)}

# IDX type codes (the third magic byte) and the numpy dtypes they stand for.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class Dataset(NamedTuple):
  """Inputs and labels: for MNIST and Fashion-MNIST, images float32 in [0, 1] shaped
  (N, 28, 28) and labels int32 shaped (N,); for a regression, inputs (N, F) and values (N,)."""
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray


# The largest IDX body read (MNIST's training images are 47 MB): a header that promises more is
# refused before anything is decompressed, so a small gzip bomb cannot fill the memory.
MAX_IDX_BYTES = 2 ** 30


def read_idx(stream, name: str = "<bytes>", max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
  """Reads one uncompressed IDX file from a binary stream, checking the header first.

  The header's dimensions are multiplied in Python integers (no overflow) and the body is
  read only up to the size they promise, plus one byte to detect trailing data.

  Args:
    stream: a binary file object (a `gzip.open` stream decompresses only what is read).
    name: the file's name, used in error messages.
    max_bytes: the largest body accepted.

  Returns:
    The array, in the file's dtype and shape.

  Raises:
    JinvertError: bad magic number, unknown type code, a body over `max_bytes`, or a size that
      disagrees with the header.
  """
  magic = stream.read(4)
  if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
    raise JinvertError(f"{name}: not an IDX file (bad magic number {magic.hex() or 'empty'})")
  ndim = magic[3]
  dims = stream.read(4 * ndim)
  if len(dims) < 4 * ndim:
    raise JinvertError(f"{name}: truncated IDX header ({4 + len(dims)} bytes, needs {4 + 4 * ndim})")
  shape = tuple(int.from_bytes(dims[i:i + 4], "big") for i in range(0, 4 * ndim, 4))
  dtype = np.dtype(_IDX_DTYPES[magic[2]])
  size = math.prod(shape) * dtype.itemsize
  if size > max_bytes:
    raise JinvertError(f"{name}: IDX header claims shape {shape} ({size:,} bytes), over the "
                       f"{max_bytes:,}-byte ceiling")
  body = stream.read(size + 1)
  if len(body) != size:
    kind = "truncated" if len(body) < size else "has trailing bytes"
    shown = len(body) if len(body) < size else f"more than {size}"
    raise JinvertError(f"{name}: IDX file {kind}: body of {shown} bytes, header {shape} needs "
                       f"{size}")
  return np.frombuffer(body, dtype).reshape(shape)


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
  """Parses the bytes of one uncompressed IDX file (see `read_idx`)."""
  return read_idx(io.BytesIO(raw), name)


def load_idx(path: Path) -> np.ndarray:
  """Reads one IDX file, gunzipping `*.gz` as it goes (never more than the header promises)."""
  try:
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as stream:
      return read_idx(stream, str(path))
  except (OSError, EOFError, zlib.error) as e:
    raise JinvertError(f"{path}: corrupt or truncated gzip file ({e})") from None


def _find_file(folder: Path, stem: str):
  for candidate in (folder / f"{stem}.gz", folder / stem):
    if candidate.is_file():
      return candidate
  return None


N_CLASSES = 10
IMAGE_SHAPE = (28, 28)


def _images(images: np.ndarray, name) -> np.ndarray:
  """Unsigned bytes scaled to [0, 1], or floats that already lie in [0, 1]."""
  if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
    raise JinvertError(f"{name}: expected images shaped (N, 28, 28), got {images.shape}")
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  if images.dtype.kind != "f":
    raise JinvertError(f"{name}: images must be unsigned bytes or floats in [0, 1], got "
                       f"{images.dtype}")
  images = images.astype(np.float32)
  if images.size and not (np.all(np.isfinite(images)) and images.min() >= 0 and images.max() <= 1):
    raise JinvertError(f"{name}: float images must lie in [0, 1], found values in "
                       f"[{np.nanmin(images):.4g}, {np.nanmax(images):.4g}]"
                       + ("" if np.all(np.isfinite(images)) else " and NaN or inf"))
  return images


def _labels(labels: np.ndarray, name) -> np.ndarray:
  if labels.ndim != 1 or labels.dtype.kind not in "iu":
    raise JinvertError(f"{name}: expected integer labels shaped (N,), got {labels.dtype} "
                       f"{labels.shape}")
  bad = labels[(labels < 0) | (labels >= N_CLASSES)]
  if bad.size:
    raise JinvertError(f"{name}: label {int(bad[0])} is outside the {N_CLASSES} classes "
                       f"(valid: 0-{N_CLASSES - 1})")
  return labels.astype(np.int32)


def _images_and_labels(images: np.ndarray, labels: np.ndarray, names) -> tuple:
  images, labels = _images(images, names[0]), _labels(labels, names[1])
  if len(images) != len(labels):
    raise JinvertError(f"{names[0]} holds {len(images)} images but {names[1]} holds "
                       f"{len(labels)} labels")
  if not len(images):
    raise JinvertError(f"{names[0]}: holds no images")
  return images, labels


def load_folder(folder: Path, name: str = "dataset") -> Dataset:
  """Loads the four IDX files of one dataset from `folder` (each gzipped or raw), checking
  image size and range, label range, and that every split holds as many labels as images."""
  paths = {key: _find_file(folder, stem) for key, stem in SPLITS.items()}
  missing = [SPLITS[k] for k, p in paths.items() if p is None]
  if missing:
    raise JinvertError(f"{folder}: missing {', '.join(missing)}")
  arrays = {k: load_idx(p) for k, p in paths.items()}
  train = _images_and_labels(arrays["train_images"], arrays["train_labels"],
                             (paths["train_images"], paths["train_labels"]))
  test = _images_and_labels(arrays["test_images"], arrays["test_labels"],
                            (paths["test_images"], paths["test_labels"]))
  return Dataset(*train, *test)


def cache_dir() -> Path:
  """The user cache for downloaded data: `$XDG_CACHE_HOME/jinvert` or `~/.cache/jinvert`."""
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base) / "jinvert"


def _candidate_folders(name: str, data_dir):
  if data_dir is not None:
    yield Path(data_dir) / name, "--data-dir"
    yield Path(data_dir), "--data-dir"
  if os.environ.get("JINVERT_DATA"):
    yield Path(os.environ["JINVERT_DATA"]) / name, "JINVERT_DATA"
  yield cache_dir() / name, "cache"
  for folder in DEBIAN_FOLDERS.get(name, ()):
    yield folder, "Debian package"


def _has_all_files(folder: Path) -> bool:
  return all(_find_file(folder, stem) is not None for stem in SPLITS.values())


def _mirrors(name: str):
  override = os.environ.get("JINVERT_MIRRORS")
  if override:
    return tuple(m.strip() for m in override.split(",") if m.strip())
  return MIRRORS[name]


def _gunzipped_sha256(payload: bytes) -> str:
  """SHA-256 of a gzip payload's content, decompressed in chunks and never past the IDX
  ceiling (a bomb is cut off there, and its digest then cannot match)."""
  digest, seen = hashlib.sha256(), 0
  try:
    with gzip.GzipFile(fileobj=io.BytesIO(payload)) as stream:
      while seen <= MAX_IDX_BYTES and (chunk := stream.read(1 << 20)):
        digest.update(chunk)
        seen += len(chunk)
  except (OSError, EOFError, zlib.error):
    return "not a gzip file"
  return digest.hexdigest()


def download(name: str, folder: Path, mirrors=None, timeout: float = 30.0) -> list:
  """Downloads dataset `name` into `folder`, verifying each file's SHA-256.

  Args:
    name: `mnist` or `fashion-mnist`.
    folder: destination; each verified file is written there atomically as `STEM.gz`.
    mirrors: base URLs tried in order (default: the public mirrors, or `$JINVERT_MIRRORS`).
    timeout: seconds per request.

  Returns:
    Empty when every file arrived, else one line per failed attempt at the first missing file.

  Raises:
    JinvertError: a file arrived but its checksum does not match (a corrupt or tampered mirror).
  """
  mirrors = _mirrors(name) if mirrors is None else mirrors
  for stem, expected in SHA256[name].items():
    if _find_file(folder, stem) is not None:
      continue
    failures = []
    for mirror in mirrors:
      url = f"{mirror.rstrip('/')}/{stem}.gz"
      try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
          payload = response.read(MAX_IDX_BYTES + 1)
      except (urllib.error.URLError, OSError, ValueError) as e:
        failures.append(f"{url}: {getattr(e, 'reason', e)}")
        continue
      digest = _gunzipped_sha256(payload)
      if digest != expected:
        raise JinvertError(f"checksum mismatch for {url}: SHA-256 {digest}, expected {expected}; "
                           "nothing was written")
      atomic_write_bytes(folder / f"{stem}.gz", payload)
      break
    else:
      return failures
  return []


def seed004_linear(key, n: int = 100) -> Dataset:
  """Seed 004's data: x ~ U(0, 1000), y = 0.4 x - 50 U(0, 1); x shaped (n, 1), y (n,). The
  same points serve as training and test set, as in the seed."""
  import jax
  kx, ky = jax.random.split(key)
  x = jax.random.uniform(kx, (n, 1), minval=0.0, maxval=1000.0)
  y = 0.4 * x[:, 0] - 50.0 * jax.random.uniform(ky, (n,))
  x, y = np.asarray(x), np.asarray(y)
  return Dataset(x, y, x, y)


def hue_rgb(hues) -> np.ndarray:
  """RGB in [0, 1] of HSV colours (hue in degrees, saturation 1, value 1): (...) -> (..., 3)."""
  k = (np.asarray(hues, np.float32)[..., None] / 60.0 + np.array([5.0, 3.0, 1.0], np.float32)) % 6
  return 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def colored(images, hues) -> np.ndarray:
  """Gray images (N, 28, 28) tinted: each pixel's grey level is the value of its image's hue,
  at full saturation: (N, 28, 28, 3) in [0, 1]."""
  return (np.asarray(images)[..., None] * hue_rgb(hues)[:, None, None, :]).astype(np.float32)


def colored_mnist(data_dir=None, random_hues: bool = False) -> Dataset:
  """MNIST with each digit k tinted hue 36 k degrees (`colored-mnist`: the colour predicts the
  class) or a hue drawn per image, seeded (`colored-mnist-random`: it predicts nothing). Made
  from the MNIST files each time, deterministically; never stored."""
  mnist = load_files("mnist", data_dir)
  splits = []
  for seed, (images, labels) in enumerate(((mnist.train_images, mnist.train_labels),
                                           (mnist.test_images, mnist.test_labels))):
    hues = (np.random.default_rng(seed).uniform(0.0, 360.0, len(labels)) if random_hues
            else 36.0 * labels)
    splits += [colored(images, hues), labels]
  return Dataset(*splits)


class DatasetSpec(NamedTuple):
  """A dataset jinvert can load by name: one input's shape, whether it is drawn from a key
  (generated) rather than read from files, and the box of its format: the pixels that the
  longer side of each drawn object is scaled to (None where the format says none)."""
  input_shape: tuple
  generated: bool = False
  box: float | None = None


# the boxes as the formats are published: MNIST's digits fit a 20-pixel box (LeCun et al.),
# Fashion-MNIST's products have their longest edge resized to 28 (Xiao et al. 2017)
DATASETS = {"mnist": DatasetSpec(IMAGE_SHAPE, box=20.0),
            "fashion-mnist": DatasetSpec(IMAGE_SHAPE, box=28.0),
            "seed004-linear": DatasetSpec((1,), generated=True),
            "colored-mnist": DatasetSpec(IMAGE_SHAPE + (3,), box=20.0),
            "colored-mnist-random": DatasetSpec(IMAGE_SHAPE + (3,), box=20.0)}
_GENERATORS = {"seed004-linear": seed004_linear}
_DERIVED = {"colored-mnist": lambda data_dir: colored_mnist(data_dir),
            "colored-mnist-random": lambda data_dir: colored_mnist(data_dir, random_hues=True)}


def load_dataset(name: str, data_dir=None, key=None) -> Dataset:
  """Finds, verifies and loads a dataset (see the module docstring for the lookup order).

  Args:
    name: a name in DATASETS.
    data_dir: an optional folder tried first.
    key: the `jax.random` key a generated dataset is drawn from (default `key(0)`).

  Returns:
    A Dataset; for the IDX datasets, float32 images in [0, 1] and int32 labels.

  Raises:
    JinvertError: unknown name, a corrupt file, or no data anywhere (the message lists what was
      tried and how to fix it).
  """
  if name in _GENERATORS:
    import jax
    return _GENERATORS[name](jax.random.key(0) if key is None else key)
  if name in _DERIVED:
    return _DERIVED[name](data_dir)
  return load_files(name, data_dir)


def dataset_folder(name: str, data_dir=None) -> Path:
  """The first folder that holds IDX dataset `name` (see the module docstring), downloading it
  into the cache when none does."""
  if name not in SHA256:
    raise JinvertError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
  tried = []
  for folder, source in _candidate_folders(name, data_dir):
    if _has_all_files(folder):
      return folder
    tried.append(f"{folder} ({source})")
  target = cache_dir() / name
  if os.environ.get("JINVERT_OFFLINE") == "1":
    tried.append("download (skipped: JINVERT_OFFLINE=1)")
  else:
    failures = download(name, target)
    if not failures:
      return target
    tried.append("download: " + failures[-1])
  raise JinvertError(
      f"{name} not found; tried: {'; '.join(tried)}. Fix: put the four IDX files "
      f"({', '.join(s + '.gz' for s in SPLITS.values())}) in DIR/{name}/ and set JINVERT_DATA=DIR "
      f"or pass --data-dir DIR")


def load_files(name: str, data_dir=None) -> Dataset:
  """Loads an IDX dataset, from the first place that has it (see the module docstring)."""
  return load_folder(dataset_folder(name, data_dir), name)


def test_image(name: str, index: int, data_dir=None) -> np.ndarray:
  """Image `index` of an IDX dataset's test split, float32 in [0, 1]: the index is checked
  against the file's header, and only the images up to it are read, not the whole split."""
  path = _find_file(dataset_folder(name, data_dir), SPLITS["test_images"])
  try:
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as stream:
      magic = stream.read(4)
      if len(magic) < 4 or magic[:3] != b"\x00\x00\x08" or magic[3] != 3:
        raise JinvertError(f"{path}: not an IDX file of byte images (magic {magic.hex()})")
      count, *shape = (int.from_bytes(stream.read(4), "big") for _ in range(3))
      if tuple(shape) != IMAGE_SHAPE:
        raise JinvertError(f"{path}: expected images shaped (N, 28, 28), got (N, {shape[0]}, "
                           f"{shape[1]})")
      if not 0 <= index < count:
        raise JinvertError(f"the {name} test set has images 0-{count - 1}, not {index}")
      size = math.prod(IMAGE_SHAPE)
      stream.seek(16 + index * size)
      image = stream.read(size)
  except (OSError, EOFError, zlib.error) as e:
    raise JinvertError(f"{path}: corrupt or truncated gzip file ({e})") from None
  if len(image) != size:
    raise JinvertError(f"{path}: IDX file truncated before image {index}")
  return np.frombuffer(image, np.uint8).reshape(IMAGE_SHAPE).astype(np.float32) / 255.0
