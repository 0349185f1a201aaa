"""tfdock: train, evaluate and serve a small CNN on MNIST-style data inside the tfdock image."""

import sys

from tfdock import quiet_start

# Before any TensorFlow import (every entry point imports this package first): no start-up notices unless
# the command line says --verbose (while `python -m tfdock.x` finds its module, sys.argv holds its args).
quiet_start.install(sys.argv[1:])
