"""ONNX models as pure JAX functions, so that any framework's classifier can be inverted.

    model = load_onnx("cnn.onnx")
    logits, activations = model.apply_fn(model.params, x)   # x: (N, *model.input_shape)

The graph's float initializers become `params` (a dict pytree: `jax.grad`, `vmap` and `jit`
work on `apply_fn` as on any jinvert model); integer initializers and `Constant` nodes stay
static, so shape arithmetic (`Shape`, `Gather`, `Concat` feeding a `Reshape`) is folded while
tracing. Every intermediate tensor on the way to the output is returned by name in
`activations`, for unit objectives. The graph runs one example at a time and is vmapped over
the batch, so a model exported with a fixed batch of 1 works at any batch size.

Only the nodes the chosen output depends on are interpreted (skl2onnx's label branch, say, is
ignored). When the output is a Softmax, `apply_fn` returns its input, the logits: the engine's
objectives take log-softmaxes, which a probability would flatten. Models older than opset 13
go through onnx's own version converter. An unsupported op, a second input or a dimension
left dynamic beyond the batch axis is an error naming the node and what is supported.

jaxonnxruntime 0.3.0 was measured first against onnxruntime on the required ops: it rejects
Relu at opset 13, its Clip fails under jax 0.10, it lacks several ops at opset 21, and it
returns no intermediate tensors; hence this interpreter.
"""

import dataclasses
import math
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jinvert.errors import JinvertError
from jinvert.files import read_input

MIN_OPSET = 13


def _static(*values) -> bool:
  return all(v is None or isinstance(v, np.ndarray) for v in values)


def _lib(*values):
  """numpy while every operand is static (shape arithmetic), jax.numpy otherwise."""
  return np if _static(*values) else jnp


def _ints(value) -> tuple:
  if not isinstance(value, np.ndarray):
    raise JinvertError("a shape or axes input is computed from the model's input; only "
                       "constant shapes are supported")
  return tuple(int(v) for v in value.reshape(-1))


def _binary(fn_name):
  def op(node, a, b):
    return getattr(_lib(a, b), fn_name)(a, b)
  return op


def _div(node, a, b):
  if _static(a, b) and a.dtype.kind in "iu":
    return np.floor_divide(a, b)
  return _lib(a, b).divide(a, b)


def _unary(fn):
  return lambda node, x: fn(x)


def _gemm(node, a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0):
  a = a.T if transA else a
  b = b.T if transB else b
  y = alpha * jnp.matmul(a, b, precision="highest")
  return y if c is None else y + beta * c


def _matmul(node, a, b):
  return _lib(a, b).matmul(a, b) if _static(a, b) else jnp.matmul(a, b, precision="highest")


def _softmax(log):
  def op(node, x, axis=-1):
    return (jax.nn.log_softmax if log else jax.nn.softmax)(x, axis=axis)
  return op


def _flatten(node, x, axis=1):
  axis = axis % x.ndim if x.ndim else 0
  return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _reshape(node, x, shape, allowzero=0):
  shape = list(_ints(shape))
  if not allowzero:
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
  return x.reshape(shape)


def _transpose(node, x, perm=None):
  return _lib(x).transpose(x, perm if perm is None else tuple(perm))


def _spatial_padding(node, x_shape, kernel, strides, dilations, pads, auto_pad, ceil_mode=0):
  """[(begin, end)] per spatial axis, from ONNX's explicit pads or auto_pad."""
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
  if spatial != 2:
    raise JinvertError(f"node {node.name!r} (Conv): only 2-D convolutions are supported, this "
                       f"one has {spatial} spatial axes")
  kernel = w.shape[2:]
  strides = tuple(strides or (1,) * spatial)
  dilations = tuple(dilations or (1,) * spatial)
  padding = _spatial_padding(node, x.shape[2:], kernel, strides, dilations, pads, auto_pad)
  y = jax.lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilations,
                                   feature_group_count=group,
                                   dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                   precision="highest")
  return y if b is None else y + b.reshape(1, -1, 1, 1)


def _pool_args(node, x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
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
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, padding,
                               window_dilation=dilations)


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
    raise JinvertError(f"node {node.name!r} (BatchNormalization): training_mode=1 is not "
                       "supported; export the model in inference mode (model.eval())")
  shape = (1, -1) + (1,) * (x.ndim - 2)
  return (x - mean.reshape(shape)) / jnp.sqrt(var.reshape(shape) + epsilon) * \
      scale.reshape(shape) + bias.reshape(shape)


def _identity(node, x, *rest, **attrs):
  return x


def _concat(node, *xs, axis=0):
  return _lib(*xs).concatenate(xs, axis=axis)


def _clip(node, x, lo=None, hi=None):
  lo = -jnp.inf if lo is None else lo
  hi = jnp.inf if hi is None else hi
  return jnp.minimum(jnp.maximum(x, lo), hi)


def _squeeze(node, x, axes=None):
  return _lib(x).squeeze(x, None if axes is None else _ints(axes))


def _unsqueeze(node, x, axes):
  out = x
  for axis in sorted(a % (x.ndim + len(_ints(axes))) for a in _ints(axes)):
    out = _lib(x).expand_dims(out, axis)
  return out


def _shape(node, x, start=0, end=None):
  return np.array(x.shape[start:end], np.int64)


def _gather(node, x, indices, axis=0):
  if _static(x, indices):
    return np.take(x, indices, axis=axis)
  return jnp.take(x, jnp.asarray(indices), axis=axis)


def _cast(node, x, to, saturate=1):
  import onnx
  dtype = onnx.helper.tensor_dtype_to_np_dtype(to)
  return x.astype(dtype) if _static(x) or dtype.kind == "f" else jnp.asarray(x).astype(dtype)


def _leaky_relu(node, x, alpha=0.01):
  return jnp.where(x >= 0, x, alpha * x)


OPS = {
    "Gemm": _gemm, "MatMul": _matmul, "Add": _binary("add"), "Sub": _binary("subtract"),
    "Mul": _binary("multiply"), "Div": _div, "Relu": _unary(jax.nn.relu),
    "LeakyRelu": _leaky_relu, "Sigmoid": _unary(jax.nn.sigmoid), "Tanh": _unary(jnp.tanh),
    "Softmax": _softmax(False), "LogSoftmax": _softmax(True), "Flatten": _flatten,
    "Reshape": _reshape, "Transpose": _transpose, "Conv": _conv, "MaxPool": _maxpool,
    "AveragePool": _avgpool, "GlobalAveragePool": _global_avgpool,
    "BatchNormalization": _batchnorm, "Dropout": _identity, "Identity": _identity,
    "Concat": _concat, "Clip": _clip, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Shape": _shape, "Gather": _gather, "Cast": _cast,
}


@dataclasses.dataclass(frozen=True)
class OnnxModel:
  """An ONNX classifier as a jinvert model.

  Attributes:
    apply_fn: `fn(params, x) -> (logits, {tensor name: value})` over a batch (N, *input_shape).
    params: the graph's float initializers, by name.
    input_shape: one input's shape (the batch axis removed).
    n_outputs: the width of the output.
    layers: names of the intermediate tensors `apply_fn` returns.
    input_name, output_name: the graph's.
    opset: the default domain's opset (after conversion from an older one).
    softmax_output: the graph ends in a Softmax, and apply_fn returns its input instead.
  """
  apply_fn: Callable
  params: dict
  input_shape: tuple
  n_outputs: int
  layers: tuple
  input_name: str
  output_name: str
  opset: int
  softmax_output: bool


def _attributes(node) -> dict:
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


def _constant(node):
  attrs = _attributes(node)
  for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
    if key in attrs:
      value = np.asarray(attrs[key])
      return value.astype(np.float32) if key.startswith("value_float") else value
  raise JinvertError(f"node {node.name!r} (Constant): only tensor, float and int values are "
                     "supported")


def _needed(nodes, output: str) -> list:
  """The nodes `output` depends on, in graph order."""
  producer = {o: i for i, n in enumerate(nodes) for o in n.output}
  wanted, stack = set(), [output]
  while stack:
    name = stack.pop()
    i = producer.get(name)
    if i is None or i in wanted:
      continue
    wanted.add(i)
    stack.extend(x for x in nodes[i].input if x)
  return [nodes[i] for i in sorted(wanted)]


def _read(path):
  import onnx
  path = Path(path)
  raw = read_input(path, "file")
  try:
    model = onnx.load_from_string(raw)
    onnx.checker.check_model(model)
  except Exception as e:  # protobuf and the checker raise many types for foreign bytes
    first = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    raise JinvertError(f"{path}: not a valid ONNX model ({first})") from None
  if not model.graph.node:
    raise JinvertError(f"{path}: not a valid ONNX model (the graph has no nodes)")
  return model


def load_onnx(path, output: str | None = None) -> OnnxModel:
  """Reads an `.onnx` classifier and checks that jinvert can run it.

  Args:
    path: the file.
    output: the graph output to invert (default: its only float output).

  Returns:
    An OnnxModel.

  Raises:
    JinvertError: not ONNX, not one float input, a dynamic dimension beyond the batch axis, an
      unsupported op or opset (naming the node).
  """
  try:
    import onnx
    from onnx import numpy_helper, version_converter
  except ImportError:
    raise JinvertError("reading .onnx files needs the onnx package: "
                       "pip install 'jinvert[onnx]'") from None
  path = Path(path)
  model = _read(path)
  opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
  if opset < MIN_OPSET:
    try:
      model = version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:
      raise JinvertError(f"{path}: opset {opset} could not be converted to {MIN_OPSET} by "
                         f"onnx's version converter ({str(e).splitlines()[0][:100]})") from None
    opset = MIN_OPSET
  graph = model.graph
  initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
  inputs = [i for i in graph.input if i.name not in initializers]
  if len(inputs) != 1:
    raise JinvertError(f"{path}: the model has {len(inputs)} inputs "
                       f"({', '.join(i.name for i in inputs) or 'none'}); jinvert inverts "
                       "models with one input")
  (graph_input,) = inputs
  tensor = graph_input.type.tensor_type
  if onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).kind != "f":
    raise JinvertError(f"{path}: input {graph_input.name!r} is not a float tensor")
  dims = tensor.shape.dim
  if len(dims) < 2:
    raise JinvertError(f"{path}: input {graph_input.name!r} has {len(dims)} axes; expected a "
                       "batch axis and at least one more")
  dynamic = [d.dim_param or "?" for d in dims[1:] if not d.dim_value]
  if dynamic:
    raise JinvertError(f"{path}: input {graph_input.name!r} leaves {', '.join(dynamic)} dynamic "
                       "beyond the batch axis; export it with a fixed input size")
  input_shape = tuple(int(d.dim_value) for d in dims[1:])

  outputs = [o for o in graph.output
             if onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type).kind == "f"]
  if output is not None:
    outputs = [o for o in graph.output if o.name == output]
    if not outputs:
      raise JinvertError(f"{path}: no output {output!r}; outputs: "
                         f"{', '.join(o.name for o in graph.output)}")
  if not outputs:
    raise JinvertError(f"{path}: the model has no float output to invert")
  output_name = outputs[0].name

  nodes = _needed(list(graph.node), output_name)
  for node in nodes:
    if node.domain not in ("", "ai.onnx") or (node.op_type not in OPS and node.op_type != "Constant"):
      raise JinvertError(f"{path}: node {node.name or '(unnamed)'!r} uses op "
                         f"{node.domain + '.' if node.domain else ''}{node.op_type}, which jinvert "
                         f"does not support; supported: {', '.join(sorted(OPS))}, Constant")
  producer = {o: n for n in nodes for o in n.output}
  logits_name, softmax_output = output_name, False
  node = producer.get(output_name)
  while node is not None and node.op_type in ("Identity", "Dropout"):
    node = producer.get(node.input[0])
  if node is not None and node.op_type == "Softmax":
    logits_name, softmax_output = node.input[0], True

  params = {k: jnp.asarray(v) for k, v in initializers.items() if v.dtype.kind == "f"}
  static = {k: v for k, v in initializers.items() if v.dtype.kind != "f"}
  static.update({o: _constant(n) for n in nodes if n.op_type == "Constant" for o in n.output})
  program = [(n, _attributes(n)) for n in nodes if n.op_type != "Constant"]
  input_name = graph_input.name
  # the activations: tensors computed from the input (a transposed weight is not one)
  dependent = {input_name}
  for n, _ in program:
    if dependent.intersection(n.input):
      dependent.update(o for o in n.output if o)
  layers = tuple(o for n, _ in program for o in n.output[:1]
                 if o in dependent and o not in (input_name, output_name))

  def one(params, x):
    env = dict(static)
    env.update(params)
    env[input_name] = x[None]
    for node, attrs in program:
      args = [env[name] if name else None for name in node.input]
      try:
        result = OPS[node.op_type](node, *args, **attrs)
      except JinvertError:
        raise
      except (TypeError, ValueError) as e:
        raise JinvertError(f"{path}: node {node.name or '(unnamed)'!r} ({node.op_type}): "
                           f"{str(e).splitlines()[0][:160]}") from None
      # numpy hands back scalars (np.int64) for 0-d results: keep static values arrays
      env[node.output[0]] = np.asarray(result) if isinstance(result, np.generic) else result
    return env[logits_name][0], {name: env[name][0] for name in layers
                                 if not _static(env[name]) and jnp.issubdtype(env[name].dtype,
                                                                              jnp.floating)}

  def apply_fn(params, x):
    return jax.vmap(one, in_axes=(None, 0))(params, x)

  out, acts = jax.eval_shape(apply_fn, params,
                             jax.ShapeDtypeStruct((1,) + input_shape, jnp.float32))
  layers = tuple(name for name in layers if name in acts)
  if len(out.shape) != 2:
    raise JinvertError(f"{path}: output {output_name!r} has shape {out.shape[1:]} per example; "
                       "jinvert inverts classifiers with one vector of outputs")
  return OnnxModel(apply_fn, params, input_shape, int(out.shape[-1]), layers, input_name,
                   output_name, opset, softmax_output)
