"""Image sizes: the cpu and gpu variants, runtime and dev stages, against the base image they start from;
layer counts and the largest layers. Builds a missing variant first (the gpu one once: ~5 GB of CUDA wheels).

    python benchmarks/image_sizes.py [--variants cpu gpu]

Writes benchmarks/results/image.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tfdock_host import image  # noqa: E402
from tfdock_host.bench import Figure, publish  # noqa: E402
from tfdock_host.engine import connect  # noqa: E402
from tfdock_host.settings import load  # noqa: E402

GB = 1e9
LARGEST_LAYERS = 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(image.VARIANTS), choices=image.VARIANTS)
    args = parser.parse_args()
    settings = load()
    client = connect()
    base_size = client.images.get(settings.base_image).attrs["Size"] / GB

    figures = []
    for variant in args.variants:
        for target in image.TARGETS:
            tag = image.ensure(settings, variant, target)
            layers = [layer for layer in client.api.history(tag) if layer["Size"] > 0]
            largest = sorted(layers, key=lambda layer: layer["Size"], reverse=True)[:LARGEST_LAYERS]
            described = "; ".join(
                f"{layer['Size'] / GB:.2f} GB {_step(layer['CreatedBy'])}" for layer in largest
            )
            figures.append(
                Figure(
                    "image",
                    f"{tag} size ({len(layers)} non-empty layers)",
                    "GB",
                    [client.images.get(tag).attrs["Size"] / GB],
                    [base_size],
                    f"base {settings.base_image}",
                    note=f"largest layers: {described}",
                )
            )
    return publish("image", figures)  # informative figures: no goal to miss


def _step(created_by: str) -> str:
    """The Dockerfile instruction behind a layer, short: `RUN ... pip install -r runtime-cpu.txt`."""
    text = " ".join(created_by.replace("/bin/sh -c #(nop) ", "").split())
    return text if len(text) <= 70 else f"{text[:30]} ... {text[-35:]}"


if __name__ == "__main__":
    sys.exit(main())
