"""ONNX models as pure JAX functions, so that any framework's classifier can be inverted.

    model = load_onnx("cnn.onnx")
    logits, activations = model.apply_fn(model.params, x)   # x: (N, *model.input_shape)

The graph's float initializers become `params` (a dict pytree: `jax.grad`, `vmap` and `jit`
work on `apply_fn` as on any jinvert model); integer initializers and `Constant` nodes stay
static, so shape arithmetic is folded while tracing (`ops`). Every intermediate tensor on the
way to the output is returned by name in `activations`, for unit objectives. The graph runs on a
batch of one, as graphs are exported (the engine's case), and a larger batch one example at a
time, so a model exported with a fixed batch of 1 works at any batch size.

A model from anyone gets the same contract as every other input: it is read as a regular file
of bounded size; weights kept in external data (torch's default export, `model.onnx.data`) load
from the model's own folder only, their offsets and lengths checked against the file before a
byte is read; the opset, every attribute and every index are checked, folded constants are
bounded, and float weights must be finite, all before the work starts.

Only the nodes the chosen output depends on are interpreted (skl2onnx's label branch, say, is
ignored). When the output is a Softmax, `apply_fn` returns its input, the logits: the engine's
objectives take log-softmaxes, which a probability would flatten. Models older than opset 13
go through onnx's own version converter. An unsupported op, a second input or a dimension
left dynamic beyond the batch axis is an error naming the node and what is supported. (Why an
interpreter of its own rather than jaxonnxruntime: experiments/RESULTS.md.)
"""

import dataclasses
import math
import os
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jinvert import memory
from jinvert.errors import JinvertError
from jinvert.files import input_size, read_input, read_range
from jinvert.onnx_import.ops import (MAX_STATIC_ELEMENTS, OPS, attributes, constant, is_static,
                                     where)

MIN_OPSET = 13
# XLA:CPU fuses a chain of elementwise ops into one loop and emits each element recursively: a
# chain 3,000 Relus deep overflows its stack (a segfault), and beside the engine's progress
# callback a 2,000-deep one took 85 s to compile; a 1,000-deep chain loads, compiles and inverts
# in 13-16 s on 2 cores. Tracing costs about 5 ms a node under the engine's transformations.
MAX_DEPTH = 1_000
MAX_NODES = 2_000


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
    batchnorm: (input tensor, running mean, running variance) names of each BatchNormalization
      node whose input is an activation and whose statistics are initializers.
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
  batchnorm: tuple = ()


def _onnx():
  try:
    import onnx
  except ImportError:
    raise JinvertError("reading .onnx files needs the onnx package: "
                       "pip install 'jinvert[onnx]'") from None
  return onnx


def _tensors(model):
  """Every tensor the graph holds: its initializers and its nodes' tensor attributes."""
  yield from model.graph.initializer
  for node in model.graph.node:
    for a in node.attribute:
      if a.HasField("t"):
        yield a.t


def _external_file(path: Path, tensor, location: str) -> Path:
  """The file holding `tensor`'s external data: inside the model's own folder, never outside
  it (by an absolute path, `..` or a symlink)."""
  folder = Path(os.path.realpath(path.parent))
  if not location or os.path.isabs(location) or ".." in Path(location).parts:
    raise JinvertError(f"{path}: tensor {tensor.name!r} keeps its data at {location!r}, outside "
                       "the model's folder; external data is read from the model's folder only")
  file = Path(os.path.realpath(folder / location))
  if folder not in file.parents:
    raise JinvertError(f"{path}: tensor {tensor.name!r} keeps its data at {location!r}, which "
                       "leads outside the model's folder; external data is read from the "
                       "model's folder only")
  return file


def _tensor_bytes(tensor) -> int:
  itemsize = _onnx().helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
  return math.prod(int(d) for d in tensor.dims) * itemsize


def _load_external_data(model, path: Path):
  """Fills every tensor kept in external data from the model's own folder: each location, offset
  and length checked against its file, and the total against the memory free, before any byte
  is read; a tensor whose shape and data disagree is refused by name."""
  onnx = _onnx()
  planned = []
  for tensor in _tensors(model):
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
      continue
    info = {e.key: e.value for e in tensor.external_data}
    file = _external_file(path, tensor, info.get("location", ""))
    size = input_size(file, f"external data file of tensor {tensor.name!r}")
    try:
      offset = int(info.get("offset", 0))
      length = int(info["length"]) if "length" in info else size - offset
    except ValueError:
      raise JinvertError(f"{path}: tensor {tensor.name!r}: unreadable offset or length in its "
                         "external data") from None
    if offset < 0 or length < 0 or offset + length > size:
      raise JinvertError(f"{path}: tensor {tensor.name!r} needs bytes {offset:,} to "
                         f"{offset + length:,} of {file.name}, which holds {size:,}: truncated")
    if length != _tensor_bytes(tensor):
      raise JinvertError(f"{path}: tensor {tensor.name!r} is shaped {list(tensor.dims)}, "
                         f"{_tensor_bytes(tensor):,} bytes, but its external data is {length:,}")
    planned.append((tensor, file, offset, length))
  memory.require(sum(p[3] for p in planned), memory.host_available_bytes(),
                 f"{path}'s external data", "the model is too large for this machine")
  for tensor, file, offset, length in planned:
    tensor.raw_data = read_range(file, offset, length, f"external data of {tensor.name!r}")
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT


def _read(path: Path):
  """The checked ModelProto of the file at `path`, its external data loaded."""
  onnx = _onnx()
  raw = read_input(path, "model")
  try:
    model = onnx.load_from_string(raw)
  except Exception as e:  # protobuf raises many types for foreign bytes
    first = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    raise JinvertError(f"{path}: not a valid ONNX model ({first})") from None
  _load_external_data(model, path)
  try:
    onnx.checker.check_model(model)
  except Exception as e:  # the checker raises several types
    first = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    raise JinvertError(f"{path}: not a valid ONNX model ({first})") from None
  if not model.graph.node:
    raise JinvertError(f"{path}: not a valid ONNX model (the graph has no nodes)")
  return model


def _upgraded(model, path: Path):
  """(model, opset): a model older than MIN_OPSET through onnx's version converter; one newer
  than the onnx package knows is refused."""
  from onnx import defs, version_converter  # after _read, which checked that onnx is there
  opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
  if opset > defs.onnx_opset_version():
    raise JinvertError(f"{path}: opset {opset} is newer than this jinvert knows (opsets "
                       f"{MIN_OPSET} to {defs.onnx_opset_version()})")
  if opset >= MIN_OPSET:
    return model, opset
  try:
    return version_converter.convert_version(model, MIN_OPSET), MIN_OPSET
  except Exception as e:
    raise JinvertError(f"{path}: opset {opset} could not be converted to {MIN_OPSET} by "
                       f"onnx's version converter ({str(e).splitlines()[0][:100]})") from None


def _graph_input(graph, initializers: dict, path: Path):
  """(the graph's one float input, one input's shape without the batch axis)."""
  onnx = _onnx()
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
  return graph_input, tuple(int(d.dim_value) for d in dims[1:])


def _output_name(graph, output: str | None, path: Path) -> str:
  """The graph output to invert: `output`, else the first float output."""
  onnx = _onnx()
  if output is not None:
    if output not in [o.name for o in graph.output]:
      raise JinvertError(f"{path}: no output {output!r}; outputs: "
                         f"{', '.join(o.name for o in graph.output)}")
    return output
  floats = [o.name for o in graph.output
            if onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type).kind == "f"]
  if not floats:
    raise JinvertError(f"{path}: the model has no float output to invert")
  return floats[0]


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


def _check_size(nodes, output: str, path: Path):
  """At most MAX_NODES nodes, at most MAX_DEPTH deep (the longest chain to the output)."""
  depth = {}
  for n in nodes:
    d = 1 + max((depth.get(i, 0) for i in n.input if i), default=0)
    depth.update((o, d) for o in n.output)
  deepest = depth.get(output, 0)
  if len(nodes) > MAX_NODES or deepest > MAX_DEPTH:
    raise JinvertError(f"{path}: {len(nodes):,} nodes, {deepest:,} deep, on the way to the output; "
                       f"jinvert runs graphs of at most {MAX_NODES:,} nodes and {MAX_DEPTH:,} deep "
                       "(XLA's CPU compiler overflows its stack on chains some thousands deep)")


def _checked(values, path: Path, what: str) -> dict:
  """{name: numpy array} from (name, function returning the array), each checked: its data
  fills its shape, a float is finite, an integer (folded while tracing) is bounded."""
  arrays = {}
  for name, value in values:
    try:
      value = value()
    except (ValueError, TypeError):
      raise JinvertError(f"{path}: {what} {name!r}: its data does not fill its shape") from None
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
      raise JinvertError(f"{path}: {what} {name!r} holds NaN or inf; the model cannot be used")
    if value.dtype.kind != "f" and value.size > MAX_STATIC_ELEMENTS:
      raise JinvertError(f"{path}: {what} {name!r} holds {value.size:,} integers, over the "
                         f"{MAX_STATIC_ELEMENTS:,} jinvert folds while loading")
    arrays[name] = value
  return arrays


def _check_ops(nodes, path: Path):
  for node in nodes:
    if node.domain not in ("", "ai.onnx") or (node.op_type not in OPS and node.op_type != "Constant"):
      raise JinvertError(f"{path}: node {node.name or '(unnamed)'!r} uses op "
                         f"{node.domain + '.' if node.domain else ''}{node.op_type}, which jinvert "
                         f"does not support; supported: {', '.join(sorted(OPS))}, Constant")


def _logits(nodes, output_name: str) -> tuple:
  """(the tensor apply_fn returns, whether the output is a Softmax of it)."""
  producer = {o: n for n in nodes for o in n.output}
  node = producer.get(output_name)
  while node is not None and node.op_type in ("Identity", "Dropout"):
    node = producer.get(node.input[0])
  if node is not None and node.op_type == "Softmax":
    return node.input[0], True
  return output_name, False


def _layers(program, input_name: str, output_name: str) -> tuple:
  """The activations: tensors computed from the input (a transposed weight is not one)."""
  dependent = {input_name}
  for n, _ in program:
    if dependent.intersection(n.input):
      dependent.update(o for o in n.output if o)
  return tuple(o for n, _ in program for o in n.output[:1]
               if o in dependent and o not in (input_name, output_name))


def _interpreter(program, static: dict, input_name: str, logits_name: str, layers, path: Path):
  """`apply_fn(params, x)`: the program run on a batch of one, as graphs are exported; a larger
  batch one example at a time (vmapped), so a graph exported with a fixed batch of 1 works."""
  def graph(params, x):
    # float constants in the input's precision, as the params are when a caller casts them
    env = {k: v.astype(x.dtype) if v.dtype.kind == "f" else v for k, v in static.items()}
    env.update(params)
    env[input_name] = x
    for node, attrs in program:
      args = [env[name] if name else None for name in node.input]
      try:
        result = OPS[node.op_type](node, *args, **attrs)
      except (JinvertError, TypeError, ValueError, IndexError) as e:
        # an attribute or input the op cannot take: numpy and jax name it in their own words
        raise JinvertError(f"{path}: {where(node)}: {str(e).splitlines()[0][:200]}") from None
      # numpy hands back scalars (np.int64) for 0-d results: keep static values arrays
      env[node.output[0]] = np.asarray(result) if isinstance(result, np.generic) else result
    return env[logits_name], {name: env[name] for name in layers
                              if not is_static(env[name]) and jnp.issubdtype(env[name].dtype,
                                                                             jnp.floating)}

  def one(params, x):
    return jax.tree.map(lambda a: a[0], graph(params, x[None]))

  def apply_fn(params, x):
    # the engine calls a model on one input at a time: no vmap, no slicing, in a deep graph
    # every primitive saved is traced again under each of the engine's transformations
    return graph(params, x) if x.shape[0] == 1 else jax.vmap(one, in_axes=(None, 0))(params, x)

  return apply_fn


def load_onnx(path, output: str | None = None) -> OnnxModel:
  """Reads an `.onnx` classifier and checks that jinvert can run it.

  Args:
    path: the file.
    output: the graph output to invert (default: its first float output).

  Returns:
    An OnnxModel.

  Raises:
    JinvertError: not ONNX, not one float input, a dynamic dimension beyond the batch axis, an
      unsupported op or opset (naming the node).
  """
  onnx = _onnx()
  path = Path(path)
  model, opset = _upgraded(_read(path), path)
  graph = model.graph
  output_name = _output_name(graph, output, path)
  nodes = _needed(list(graph.node), output_name)
  _check_size(nodes, output_name, path)
  _check_ops(nodes, path)
  initializers = _checked([(t.name, lambda t=t: onnx.numpy_helper.to_array(t))
                           for t in graph.initializer], path, "initializer")
  graph_input, input_shape = _graph_input(graph, initializers, path)
  logits_name, softmax_output = _logits(nodes, output_name)
  params = {k: jnp.asarray(v) for k, v in initializers.items() if v.dtype.kind == "f"}
  static = {k: v for k, v in initializers.items() if v.dtype.kind != "f"}
  static.update(_checked([(n.output[0], lambda n=n: constant(n)) for n in nodes
                          if n.op_type == "Constant"], path, "constant"))
  program = [(n, attributes(n)) for n in nodes if n.op_type != "Constant"]
  layers = _layers(program, graph_input.name, output_name)
  apply_fn = _interpreter(program, static, graph_input.name, logits_name, layers, path)
  out, acts = jax.eval_shape(apply_fn, params,
                             jax.ShapeDtypeStruct((1,) + input_shape, jnp.float32))
  if len(out.shape) != 2:
    raise JinvertError(f"{path}: output {output_name!r} has shape {out.shape[1:]} per example; "
                       "jinvert inverts classifiers with one vector of outputs")
  batchnorm = tuple((n.input[0], n.input[3], n.input[4]) for n, _ in program
                    if n.op_type == "BatchNormalization" and n.input[0] in acts
                    and n.input[3] in params and n.input[4] in params)
  return OnnxModel(apply_fn, params, input_shape, int(out.shape[-1]),
                   tuple(name for name in layers if name in acts), graph_input.name, output_name,
                   opset, softmax_output, batchnorm)
