"""The ONNX ops jinvert interprets, one function each, and the table `OPS` that names them.

Each op is `op(node, *inputs, **attributes) -> output`, its attributes as ONNX names them, with
ONNX's defaults; it checks what it is given (attributes in their legal range, indices in
range) and raises a JinvertError saying what is wrong, which the interpreter prefixes with the
node. While every input is static (a numpy array: shape arithmetic such as `Shape`,
`Gather` and `Concat` feeding a `Reshape`) an op computes with numpy, so the result is folded
while tracing; otherwise with jax.numpy, so `jax.grad`, `vmap` and `jit` run through it. Each op
matches onnxruntime (tests/test_onnx.py). A new op is one function and one entry of `OPS`.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jinvert import convolution
from jinvert.errors import JinvertError


# Shape arithmetic is folded while tracing, in numpy; a graph that builds a larger constant
# (a Concat that doubles itself, a broadcast of two long vectors) is refused before numpy would
# allocate it.
MAX_STATIC_ELEMENTS = 2 ** 20


def where(node) -> str:
  """How errors name a node: `node 'conv1' (Conv)`."""
  return f"node {node.name or '(unnamed)'!r} ({node.op_type})"


def _bounded(node, shape):
  """Refuses a static result of `shape` over MAX_STATIC_ELEMENTS, before it is computed."""
  size = math.prod(int(d) for d in shape)
  if size > MAX_STATIC_ELEMENTS:
    raise JinvertError(f"folds a constant of {size:,} elements "
                       f"{tuple(int(d) for d in shape)}, over the {MAX_STATIC_ELEMENTS:,} "
                       "jinvert computes while loading")


def is_static(*values) -> bool:
  """Whether every value is known while tracing (a numpy array, or an absent input)."""
  return all(v is None or isinstance(v, np.ndarray) for v in values)


def _lib(*values):
  """numpy while every operand is static (shape arithmetic), jax.numpy otherwise."""
  return np if is_static(*values) else jnp


def _ints(value) -> tuple:
  if not isinstance(value, np.ndarray):
    raise JinvertError("a shape or axes input is computed from the model's input; only "
                       "constant shapes are supported")
  return tuple(int(v) for v in value.reshape(-1))


def _aligned(*values):
  """ONNX broadcasts as numpy does; rank for rank, spelled out, so that no rank is promoted
  implicitly (which JAX may be told to refuse)."""
  rank = max(np.ndim(v) for v in values)
  return [v if v is None or np.ndim(v) in (0, rank) else v.reshape((1,) * (rank - v.ndim) + v.shape)
          for v in values]


def _binary(fn_name):
  def op(node, a, b):
    if is_static(a, b):
      _bounded(node, np.broadcast_shapes(np.shape(a), np.shape(b)))
    return getattr(_lib(a, b), fn_name)(*_aligned(a, b))
  return op


def _div(node, a, b):
  a, b = _aligned(a, b)
  if is_static(a, b):
    _bounded(node, np.broadcast_shapes(a.shape, b.shape))
    if a.dtype.kind in "iu":
      return np.floor_divide(a, b)
  return _lib(a, b).divide(a, b)


def _unary(fn):
  return lambda node, x: fn(x)


def _gemm(node, a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
  a = a.T if transA else a
  b = b.T if transB else b
  y = alpha * jnp.matmul(a, b, precision="highest")
  return y if c is None else jnp.add(*_aligned(y, beta * c))


def _matmul(node, a, b):
  if not is_static(a, b):
    return jnp.matmul(a, b, precision="highest")
  shape = jax.eval_shape(jnp.matmul, jax.ShapeDtypeStruct(a.shape, a.dtype),
                         jax.ShapeDtypeStruct(b.shape, b.dtype)).shape
  _bounded(node, shape)
  return np.matmul(a, b)


def _softmax(log):
  def op(node, x, axis=-1):
    return (jax.nn.log_softmax if log else jax.nn.softmax)(x, axis=axis)
  return op


def _flatten(node, x, axis=1):
  if not -x.ndim <= axis <= x.ndim:
    raise JinvertError(f"axis {axis} is outside [-{x.ndim}, {x.ndim}] for a "
                       f"{x.ndim}-D input")
  axis = axis % x.ndim if x.ndim and axis != x.ndim else axis
  return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _reshape(node, x, shape, allowzero=0):
  shape = list(_ints(shape))
  if not allowzero:
    past = [i for i, s in enumerate(shape) if s == 0 and i >= x.ndim]
    if past:
      raise JinvertError(f"shape {shape} copies axis {past[0]} (a 0) of a "
                         f"{x.ndim}-D input")
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
  if shape.count(-1) > 1 or any(s < -1 for s in shape):
    raise JinvertError(f"shape {shape} is not a shape")
  return x.reshape(shape)


def _transpose(node, x, perm=None):
  return _lib(x).transpose(x, perm if perm is None else tuple(perm))


def _check_window(node, x_shape, kernel, strides, dilations, pads):
  """Every window attribute in its legal range (kernels, strides and dilations at least 1, pads
  at least 0, one value per spatial axis), and the window no larger than the padded input."""
  n = len(x_shape)
  for name, values, least, count in (("kernel_shape", kernel, 1, n), ("strides", strides, 1, n),
                                     ("dilations", dilations, 1, n),
                                     ("pads", pads or [0] * 2 * n, 0, 2 * n)):
    values = [int(v) for v in values]
    if len(values) != count:
      raise JinvertError(f"{name} has {len(values)} values, the input's {n} "
                         f"spatial axes need {count}")
    if min(values) < least:
      raise JinvertError(f"{name} {values} must be at least {least}")


def _spatial_padding(node, x_shape, kernel, strides, dilations, pads, auto_pad, ceil_mode=0):
  """[(begin, end)] per spatial axis, from ONNX's explicit pads or auto_pad; checked."""
  _check_window(node, x_shape, kernel, strides, dilations, pads)
  padding = _padding(x_shape, kernel, strides, dilations, pads, auto_pad, ceil_mode)
  for size, k, d, (begin, end) in zip(x_shape, kernel, dilations, padding):
    if (k - 1) * d + 1 > size + begin + end:
      raise JinvertError(f"a window of {(k - 1) * d + 1} (kernel {k}, dilation "
                         f"{d}) is larger than its padded input of {size + begin + end}")
  return padding


def _padding(x_shape, kernel, strides, dilations, pads, auto_pad, ceil_mode):
  n = len(kernel)
  auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
  if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
    padding = []
    for size, k, s, d in zip(x_shape, kernel, strides, dilations):
      out = -(-size // s)
      total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
      small, large = total // 2, total - total // 2
      padding.append((large, small) if auto_pad == "SAME_LOWER" else (small, large))
    return padding
  if auto_pad == "VALID":
    return [(0, 0)] * n
  pads = list(pads or [0] * (2 * n))
  padding = [(pads[i], pads[i + n]) for i in range(n)]
  if ceil_mode:  # one more window wherever a partial window remains at the end
    for i, (size, k, s, d) in enumerate(zip(x_shape, kernel, strides, dilations)):
      span = size + padding[i][0] + padding[i][1] - ((k - 1) * d + 1)
      if span % s:
        padding[i] = (padding[i][0], padding[i][1] + s - span % s)
  return padding


def _conv(node, x, w, b=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
          pads=None, strides=None):
  spatial = w.ndim - 2
  if spatial != 2 or x.ndim != 4:
    raise JinvertError(f"only 2-D convolutions are supported, this one has "
                       f"{spatial} spatial axes and a {x.ndim}-D input")
  kernel = w.shape[2:]
  if kernel_shape is not None and tuple(kernel_shape) != tuple(kernel):
    raise JinvertError(f"kernel_shape {list(kernel_shape)} disagrees with the "
                       f"weights' {list(kernel)}")
  if group < 1 or x.shape[1] != w.shape[1] * group or w.shape[0] % group:
    raise JinvertError(f"{x.shape[1]} input channels, weights {tuple(w.shape)} "
                       f"and group {group} do not fit")
  strides = tuple(strides or (1,) * spatial)
  dilations = tuple(dilations or (1,) * spatial)
  padding = _spatial_padding(node, x.shape[2:], kernel, strides, dilations, pads, auto_pad)
  y = convolution.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilations,
                                       feature_group_count=group,
                                       dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                       precision="highest")
  return y if b is None else y + b.reshape(1, -1, 1, 1)


def _pool_args(node, x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
  if kernel_shape is None or x.ndim < 3:
    raise JinvertError("needs kernel_shape and an input with spatial axes")
  n = len(kernel_shape)
  strides = tuple(strides or (1,) * n)
  dilations = tuple(dilations or (1,) * n)
  padding = _spatial_padding(node, x.shape[2:], kernel_shape, strides, dilations, pads,
                             auto_pad, ceil_mode)
  return ((1, 1) + tuple(kernel_shape), (1, 1) + strides, (1, 1) + dilations,
          [(0, 0), (0, 0)] + padding)


def _maxpool(node, x, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None,
             pads=None, storage_order=0, strides=None):
  window, strides, dilations, padding = _pool_args(node, x, kernel_shape, strides, dilations,
                                                   pads, auto_pad, ceil_mode)
  return convolution.max_pool(x, window, strides, padding, window_dilation=dilations)


def _avgpool(node, x, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
             kernel_shape=None, pads=None, strides=None):
  window, strides, dilations, padding = _pool_args(node, x, kernel_shape, strides, dilations,
                                                   pads, auto_pad, ceil_mode)
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding,
                                window_dilation=dilations)
  if count_include_pad:
    # the explicit pads count, the extra end padding of ceil_mode does not
    explicit = _spatial_padding(node, x.shape[2:], kernel_shape, strides[2:], dilations[2:],
                                pads, auto_pad)
    padded = x.shape[:2] + tuple(n + b + e for n, (b, e) in zip(x.shape[2:], explicit))
    extra = [(0, 0)] * 2 + [(0, p[1] - e[1]) for p, e in zip(padding[2:], explicit)]
    count = jax.lax.reduce_window(jnp.ones(padded, x.dtype), 0.0, jax.lax.add, window, strides,
                                  extra, window_dilation=dilations)
  else:
    count = jax.lax.reduce_window(jnp.ones(x.shape, x.dtype), 0.0, jax.lax.add, window, strides,
                                  padding, window_dilation=dilations)
  return total / count


def _global_avgpool(node, x):
  return jnp.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)


def _batchnorm(node, x, scale, bias, mean, var, epsilon=1e-5, momentum=0.9, training_mode=0):
  if training_mode:
    raise JinvertError("training_mode=1 is not supported; export the model in inference mode "
                       "(model.eval())")
  shape = (1, -1) + (1,) * (x.ndim - 2)
  return (x - mean.reshape(shape)) / jnp.sqrt(var.reshape(shape) + epsilon) * \
      scale.reshape(shape) + bias.reshape(shape)


def _identity(node, x, *rest, **attrs):
  return x


def _concat(node, *xs, axis=0):
  if is_static(*xs):
    _bounded(node, (sum(np.size(x) for x in xs),))
  return _lib(*xs).concatenate(xs, axis=axis)


def _clip(node, x, lo=None, hi=None):
  lo = -jnp.inf if lo is None else lo
  hi = jnp.inf if hi is None else hi
  return jnp.minimum(jnp.maximum(x, lo), hi)


def _squeeze(node, x, axes=None):
  return _lib(x).squeeze(x, None if axes is None else _ints(axes))


def _unsqueeze(node, x, axes):
  rank = x.ndim + len(_ints(axes))
  if any(not -rank <= a < rank for a in _ints(axes)):
    raise JinvertError(f"axes {list(_ints(axes))} outside the {rank}-D result")
  out = x
  for axis in sorted(a % rank for a in _ints(axes)):
    out = _lib(x).expand_dims(out, axis)
  return out


def _shape(node, x, start=0, end=None):
  return np.array(x.shape[start:end], np.int64)


def _gather(node, x, indices, axis=0):
  if not -np.ndim(x) <= axis < np.ndim(x):
    raise JinvertError(f"axis {axis} of a {np.ndim(x)}-D input")
  size = np.shape(x)[axis]
  if is_static(indices) and np.size(indices):
    bad = indices[(indices < -size) | (indices >= size)]
    if bad.size:
      raise JinvertError(f"index {int(bad.flat[0])} is out of range for axis "
                         f"{axis} of size {size}")
  elif not is_static(indices):
    raise JinvertError("indices computed from the model's input are not "
                       "supported")
  if is_static(x, indices):
    _bounded(node, np.shape(indices) + tuple(np.delete(np.shape(x), axis % np.ndim(x))))
    return np.take(x, indices, axis=axis)
  return jnp.take(x, jnp.asarray(indices), axis=axis)


def _cast(node, x, to, saturate=1):
  import onnx
  dtype = onnx.helper.tensor_dtype_to_np_dtype(to)
  return x.astype(dtype) if is_static(x) or dtype.kind == "f" else jnp.asarray(x).astype(dtype)


def _relu(node, x):
  # jax.nn.relu is a jitted custom-JVP function, traced again at every call under the engine's
  # vmaps and grad (8 ms a node); where() has the same value and the same gradient at 0
  return jnp.where(x > 0, x, jnp.zeros_like(x))


def _leaky_relu(node, x, alpha=0.01):
  return jnp.where(x >= 0, x, alpha * x)


OPS = {
    "Gemm": _gemm, "MatMul": _matmul, "Add": _binary("add"), "Sub": _binary("subtract"),
    "Mul": _binary("multiply"), "Div": _div, "Relu": _relu,
    "LeakyRelu": _leaky_relu, "Sigmoid": _unary(jax.lax.logistic), "Tanh": _unary(jnp.tanh),
    "Softmax": _softmax(False), "LogSoftmax": _softmax(True), "Flatten": _flatten,
    "Reshape": _reshape, "Transpose": _transpose, "Conv": _conv, "MaxPool": _maxpool,
    "AveragePool": _avgpool, "GlobalAveragePool": _global_avgpool,
    "BatchNormalization": _batchnorm, "Dropout": _identity, "Identity": _identity,
    "Concat": _concat, "Clip": _clip, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Shape": _shape, "Gather": _gather, "Cast": _cast,
}


def attributes(node) -> dict:
  """A node's attributes by name, as Python values (tensors as numpy arrays)."""
  import onnx
  out = {}
  for a in node.attribute:
    value = onnx.helper.get_attribute_value(a)
    if isinstance(value, onnx.TensorProto):
      value = onnx.numpy_helper.to_array(value)
    elif isinstance(value, bytes):
      value = value.decode()
    elif isinstance(value, list):
      value = [v.decode() if isinstance(v, bytes) else v for v in value]
    out[a.name] = value
  return out


def constant(node):
  """The value of a `Constant` node, a static numpy array."""
  attrs = attributes(node)
  for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
    if key in attrs:
      value = np.asarray(attrs[key])
      return value.astype(np.float32) if key.startswith("value_float") else value
  raise JinvertError(f"{where(node)}: only tensor, float and int values are supported")
