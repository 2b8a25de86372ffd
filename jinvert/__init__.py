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

from jinvert import (checkpoint, data, distill, metrics, models, objectives, parameterizations,
                     plots, presets, priors, train, transforms)
from jinvert.classifiers import Classifier, load_model
from jinvert.engine import InversionResult, invert, make_inversion, timed_invert
from jinvert.errors import JinvertError
from jinvert.input_space import InputSpace
from jinvert.objectives import Objective
from jinvert.parameterizations import Parameterization
from jinvert.presets import Preset
from jinvert.version import __version__

__all__ = [
    "Classifier", "InputSpace", "InversionResult", "JinvertError", "Objective",
    "Parameterization", "Preset", "__version__", "checkpoint", "data", "distill", "invert",
    "load_model", "make_inversion", "metrics", "models", "objectives", "parameterizations",
    "plots", "presets", "priors", "timed_invert", "train", "transforms",
]
