"""ONNX models as pure JAX functions, so that any framework's classifier can be inverted.

    model = load_onnx("cnn.onnx")
    logits, activations = model.apply_fn(model.params, x)   # x: (N, *model.input_shape)

The graph's float initializers become `params` (a dict pytree: `jax.grad`, `vmap` and `jit`
work on `apply_fn` as on any jinvert model); integer initializers and `Constant` nodes stay
static, so shape arithmetic is folded while tracing (`ops`). Every intermediate tensor on the
way to the output is returned by name in `activations`, for unit objectives. The graph runs one
example at a time and is vmapped over the batch, so a model exported with a fixed batch of 1
works at any batch size.

Only the nodes the chosen output depends on are interpreted (skl2onnx's label branch, say, is
ignored). When the output is a Softmax, `apply_fn` returns its input, the logits: the engine's
objectives take log-softmaxes, which a probability would flatten. Models older than opset 13
go through onnx's own version converter. An unsupported op, a second input or a dimension
left dynamic beyond the batch axis is an error naming the node and what is supported. (Why an
interpreter of its own rather than jaxonnxruntime: experiments/RESULTS.md.)
"""

import dataclasses
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jinvert.errors import JinvertError
from jinvert.files import read_input
from jinvert.onnx_import.ops import OPS, attributes, constant, is_static

MIN_OPSET = 13


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


def _onnx():
  try:
    import onnx
  except ImportError:
    raise JinvertError("reading .onnx files needs the onnx package: "
                       "pip install 'jinvert[onnx]'") from None
  return onnx


def _read(path: Path):
  """The checked ModelProto of the file at `path`."""
  onnx = _onnx()
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


def _upgraded(model, path: Path):
  """(model, opset): a model older than MIN_OPSET through onnx's version converter."""
  from onnx import version_converter  # after _read, which checked that onnx is there
  opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
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
  """`apply_fn(params, x)`: the program run on one example at a time, vmapped over the batch."""
  def one(params, x):
    # float constants in the input's precision, as the params are when a caller casts them
    env = {k: v.astype(x.dtype) if v.dtype.kind == "f" else v for k, v in static.items()}
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
                                 if not is_static(env[name]) and jnp.issubdtype(env[name].dtype,
                                                                                jnp.floating)}

  return lambda params, x: jax.vmap(one, in_axes=(None, 0))(params, x)


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
  initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
  graph_input, input_shape = _graph_input(graph, initializers, path)
  output_name = _output_name(graph, output, path)
  nodes = _needed(list(graph.node), output_name)
  _check_ops(nodes, path)
  logits_name, softmax_output = _logits(nodes, output_name)
  params = {k: jnp.asarray(v) for k, v in initializers.items() if v.dtype.kind == "f"}
  static = {k: v for k, v in initializers.items() if v.dtype.kind != "f"}
  static.update({o: constant(n) for n in nodes if n.op_type == "Constant" for o in n.output})
  program = [(n, attributes(n)) for n in nodes if n.op_type != "Constant"]
  layers = _layers(program, graph_input.name, output_name)
  apply_fn = _interpreter(program, static, graph_input.name, logits_name, layers, path)
  out, acts = jax.eval_shape(apply_fn, params,
                             jax.ShapeDtypeStruct((1,) + input_shape, jnp.float32))
  if len(out.shape) != 2:
    raise JinvertError(f"{path}: output {output_name!r} has shape {out.shape[1:]} per example; "
                       "jinvert inverts classifiers with one vector of outputs")
  return OnnxModel(apply_fn, params, input_shape, int(out.shape[-1]),
                   tuple(name for name in layers if name in acts), graph_input.name, output_name,
                   opset, softmax_output)
