"""The one exception type jinvert raises for bad input."""


class JinvertError(ValueError):
  """Bad input: a wrong shape, a corrupt file, an unknown name.

  The message names the problem in one line; the CLI prints it and exits 2.
  """
