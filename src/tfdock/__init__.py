"""tfdock: train, evaluate and serve a small CNN on MNIST-style data inside the tfdock image."""

import os

# Before any TensorFlow import: hide its C++ INFO lines (CPU feature notices), keep its warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
