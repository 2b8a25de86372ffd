"""jinvert: invert trained neural networks with JAX.

Find the inputs a trained model maps to a chosen output: a class, a whole output vector, a
regression value, a hidden unit switched on or off.
"""

__version__ = "0.1.0"
