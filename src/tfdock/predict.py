"""Classify images with an exported model: PNG/JPEG files (any size, grayscale or RGB) or IDX image files.

Usage: python -m tfdock.predict --model RUN_DIR|model.keras|saved_model FILE...
Prints one line per image: the file (with [index] for IDX files), the class and its probability.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tfdock import cli, data, export
from tfdock.errors import DataError
from tfdock.evaluate import CLASS_NAMES


def read_images(path: Path) -> np.ndarray:
    """N x 28 x 28 uint8 pixels from an IDX images file (.gz or not) or one picture file."""
    if "idx3-ubyte" in path.name:
        return data.read_idx(path, data.IMAGES_MAGIC)
    try:
        with Image.open(path) as picture:
            gray = picture.convert("L").resize((data.IMAGE_SIDE, data.IMAGE_SIDE), Image.Resampling.LANCZOS)
            return np.asarray(gray, dtype=np.uint8)[np.newaxis]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise DataError(
            f"{path}: not an image PIL can read, nor an IDX images file (*idx3-ubyte[.gz])"
        ) from None
    except OSError as error:
        raise DataError(f"{path}: cannot read the image ({error})") from None


def _class_names(model_path: Path) -> list[str]:
    """The training run's class names when its config.json is next to the model, else class indices."""
    for directory in (model_path, model_path.parent):
        config = directory / "config.json"
        if config.is_file():
            return CLASS_NAMES[json.loads(config.read_text())["dataset"]]
    return [str(index) for index in range(data.NUM_CLASSES)]


def _command(argv: Sequence[str] | None) -> None:
    parser = cli.ArgumentParser(prog="tfdock.predict", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="run dir, model.keras or saved_model dir")
    parser.add_argument("files", type=Path, nargs="+", metavar="FILE")
    args = parser.parse_args(argv)
    inputs = [(path, read_images(path)) for path in args.files]  # a bad file fails before the model loads
    predict = export.load(args.model)
    names = _class_names(args.model)
    for path, images in inputs:
        probabilities = predict(images)
        for index, row in enumerate(probabilities):
            label = f"{path}[{index}]" if len(images) > 1 or "idx3-ubyte" in path.name else str(path)
            print(f"{label}: {names[int(row.argmax())]} ({row.max():.3f})")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(_command, argv)


if __name__ == "__main__":
    sys.exit(main())
