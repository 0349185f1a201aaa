"""Evaluate an exported model on a dataset's test set: accuracy, loss and confusion matrix (JSON and PNG).

Usage: python -m tfdock.evaluate --model RUN_DIR|model.keras|saved_model [--dataset D] [--data-dir DIR]
                                 [--output-dir DIR] [--limit-test N]
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfdock import cli, data, export
from tfdock.config import DATASETS
from tfdock.files import atomic_path, write_text_atomically

CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(data.NUM_CLASSES)],
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}


def evaluate(predict: Any, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    probabilities = predict(images)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((data.NUM_CLASSES, data.NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    true_class_probability = probabilities[np.arange(len(labels)), labels]
    return {
        "examples": len(labels),
        "accuracy": float((predicted == labels).mean()),
        "loss": float(-np.log(np.clip(true_class_probability, 1e-7, 1.0)).mean()),
        "confusion_matrix": confusion.tolist(),  # rows: true class, columns: predicted class
    }


def plot_confusion(confusion: np.ndarray, class_names: list[str], title: str, path: Path) -> None:
    os.environ.setdefault("MPLCONFIGDIR", str(Path.home() / ".config" / "matplotlib"))
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 6))
    image = axes.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = range(len(class_names))
    axes.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title=title)
    axes.set_xticklabels(class_names, rotation=45, ha="right")
    axes.set_yticklabels(class_names)
    for (row, column), count in np.ndenumerate(confusion):
        color = "white" if count > confusion.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", fontsize=7, color=color)
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, format="png")
    plt.close(figure)


def _command(argv: Sequence[str] | None) -> None:
    parser = cli.ArgumentParser(prog="tfdock.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run dir, model.keras or saved_model dir")
    parser.add_argument("--dataset", choices=DATASETS, default="fashion-mnist")
    parser.add_argument("--data-dir", type=Path, default=Path("/data"))
    parser.add_argument("--output-dir", type=Path, help="default: the directory holding the model")
    parser.add_argument("--limit-test", type=int, help="evaluate on the first N test images only")
    args = parser.parse_args(argv)
    predict = export.load(args.model)
    splits = data.load(args.data_dir, args.dataset)
    images, labels = splits.test_images[: args.limit_test], splits.test_labels[: args.limit_test]
    results = {"model": str(args.model), "dataset": args.dataset, **evaluate(predict, images, labels)}

    output_dir = args.output_dir or (
        args.model if args.model.is_dir() and not export.is_saved_model(args.model) else args.model.parent
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(output_dir / "evaluation.json", json.dumps(results, indent=2))
    title = f"{args.dataset}: accuracy {results['accuracy']:.4f} on {len(labels)} test images"
    plot_confusion(
        np.array(results["confusion_matrix"]),
        CLASS_NAMES[args.dataset],
        title,
        output_dir / "confusion_matrix.png",
    )
    shown = cli.as_the_host_sees(str(output_dir))
    print(f"{title}, loss {results['loss']:.4f} — {shown}/evaluation.json, confusion_matrix.png")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_command, argv)


if __name__ == "__main__":
    sys.exit(main())
