"""Lock files: requirements/*.in (intent) compiled to *.txt (exact versions with hashes) by uv."""

from __future__ import annotations

from tfdock_host.settings import ROOT

REQUIREMENTS = ROOT / "requirements"
# The image is linux/amd64 with Python 3.11; the host tools must install anywhere Python >= 3.10 runs.
IMAGE_PLATFORM = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
ANY_HOST = ["--universal", "--python-version", "3.10"]
# In dependency order: dev is constrained by both runtime locks, host-test by the host lock.
LOCKS = {
    "runtime-cpu": IMAGE_PLATFORM,
    "runtime-gpu": IMAGE_PLATFORM,
    "dev": IMAGE_PLATFORM,
    "host": ANY_HOST,
    "host-test": ANY_HOST,
}


def compile_commands(upgrade: bool = False) -> list[list[str]]:
    return [
        [
            "uv", "pip", "compile", "--quiet", "--generate-hashes", *platform,
            *(["--upgrade"] if upgrade else []),
            f"{name}.in", "--output-file", f"{name}.txt",
        ]
        for name, platform in LOCKS.items()
    ]  # fmt: skip
