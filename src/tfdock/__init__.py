"""tfdock: train, evaluate and serve a small CNN on MNIST-style data inside the tfdock image."""
