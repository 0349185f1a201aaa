"""minimal_example: a small convnet on MNIST-format data, trained by the project's contract."""
