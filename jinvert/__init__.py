"""jinvert: invert trained neural networks with JAX.

Find the inputs a trained model maps to a chosen output: a class, a whole output vector, a
regression value, a hidden unit switched on or off. Every target and restart is searched at
once, in one compiled call.

>>> import jax, jax.numpy as jnp
>>> import jinvert as ji
>>> model = lambda params, x: x.reshape(len(x), -1) @ params   # any apply_fn(params, x)
>>> params = jax.random.normal(jax.random.key(0), (64, 10))
>>> preset = ji.presets.build("raw", ji.InputSpace((8, 8)))  # seed 003's recipe, by name
>>> result = ji.invert(model, params, targets=jnp.arange(10), key=jax.random.key(1),
...                    input_shape=(8, 8), restarts=4, **preset.arguments())
>>> result.inputs.shape
(10, 4, 8, 8)
>>> float(jax.nn.softmax(result.outputs)[jnp.arange(10), :, jnp.arange(10)].min()) > 0.99
True

The pieces: `objectives` (what to maximise, an algebra), `parameterizations` (what the optimiser
moves), `transforms` (robustness), `presets` (named recipes), `invert` (the engine),
`load_model` (a checkpoint or an ONNX file, with its input space), `models` (the zoo),
`train` and `checkpoint`, `metrics` and `plots`. The command line (`jinvert --help`) is
`jinvert.cli`.
"""

import importlib

from jinvert.version import __version__  # noqa: F401 (in __all__)

# Imported when first used (PEP 562): `import jinvert` starts no JAX, so the command line can set
# up its devices and its Ctrl-C handling before the heavy imports, and `import jinvert.errors`
# stays cheap.
_MODULES = ("checkpoint", "convolution", "data", "distill", "distributed", "metrics", "models",
            "objectives", "parameterizations", "plots", "presets", "priors", "train",
            "transforms", "work_dir")
_NAMES = {"Classifier": "classifiers", "load_model": "classifiers", "InversionResult": "engine",
          "invert": "engine", "keep_best": "engine", "make_inversion": "engine",
          "timed_invert": "engine",
          "JinvertError": "errors", "InputSpace": "input_space", "Objective": "objectives",
          "Parameterization": "parameterizations", "Preset": "presets"}

__all__ = sorted(("__version__", *_MODULES, *_NAMES))


def __getattr__(name):
  if name in _MODULES:
    return importlib.import_module(f"jinvert.{name}")
  if name in _NAMES:
    value = getattr(importlib.import_module(f"jinvert.{_NAMES[name]}"), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'jinvert' has no attribute {name!r}")


def __dir__():
  return __all__
