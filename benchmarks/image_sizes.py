"""Image sizes: each variant's runtime image against its base, and its dev image against that runtime.

Held to issue 16's goals: runtime cpu <= 1.3 GB, runtime gpu <= 5.0 GB, the dev stage adding <= 0.4 GB over
its runtime (GB = 1e9 bytes); the notes give the largest layers. Only the variants named are measured; a
missing one is built first (the gpu one once: ~5 GB of CUDA wheels).

    python benchmarks/image_sizes.py [--variants cpu gpu]

Writes benchmarks/results/image.json.
"""

from __future__ import annotations

import argparse
import dataclasses
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
RUNTIME_GOAL_GB = {"cpu": 1.3, "gpu": 5.0}
DEV_EXTRA_GOAL_GB = 0.4  # what the dev stage may add over its runtime


@dataclasses.dataclass(frozen=True)
class ImageSize:
    """A built image: its tag, size in GB, non-empty layer count, and its largest layers described."""

    tag: str
    gigabytes: float
    layers: int
    largest: str


def variant_figures(variant: str, runtime: ImageSize, dev: ImageSize, base: ImageSize) -> list[Figure]:
    """A variant's two rows: its runtime against the base (its goal: a size), its dev image against that
    runtime (its goal: what the dev stage adds)."""
    return [
        Figure("image", f"{runtime.tag} size ({runtime.layers} non-empty layers)", "GB", [runtime.gigabytes],
               [base.gigabytes], f"base {base.tag}", ("value", "<=", RUNTIME_GOAL_GB[variant]),
               f"largest layers: {runtime.largest}"),
        Figure("image", f"{dev.tag} size over its runtime ({dev.layers} non-empty layers)", "GB",
               [dev.gigabytes], [runtime.gigabytes], f"runtime {runtime.tag}",
               ("extra", "<=", DEV_EXTRA_GOAL_GB),
               f"the dev stage adds {dev.gigabytes - runtime.gigabytes:.2f} GB; "
               f"largest layers: {dev.largest}"),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(image.VARIANTS), choices=image.VARIANTS)
    args = parser.parse_args()
    settings = load()
    client = connect()

    def measured(tag: str) -> ImageSize:
        layers = [layer for layer in client.api.history(tag) if layer["Size"] > 0]
        largest = sorted(layers, key=lambda layer: layer["Size"], reverse=True)[:LARGEST_LAYERS]
        described = "; ".join(f"{layer['Size'] / GB:.2f} GB {_step(layer['CreatedBy'])}" for layer in largest)
        return ImageSize(tag, client.images.get(tag).attrs["Size"] / GB, len(layers), described)

    base = measured(settings.base_image)
    figures = []
    for variant in args.variants:
        runtime, dev = (measured(image.ensure(settings, variant, target)) for target in ("runtime", "dev"))
        figures += variant_figures(variant, runtime, dev, base)
    return publish("image", figures)


def _step(created_by: str) -> str:
    """The Dockerfile instruction behind a layer, short: `RUN ... pip install -r runtime-cpu.txt`."""
    text = " ".join(created_by.replace("/bin/sh -c #(nop) ", "").split())
    return text if len(text) <= 70 else f"{text[:30]} ... {text[-35:]}"


if __name__ == "__main__":
    sys.exit(main())
