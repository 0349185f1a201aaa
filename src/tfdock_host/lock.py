"""Lock files: requirements/*.in (intent) compiled to *.txt (exact versions with hashes) by uv.

The images' locks exist per architecture, from the same .in: `runtime-cpu.txt` for linux/x86_64 and
`runtime-cpu.aarch64.txt` for linux/aarch64 (markers in the .in pick what differs, e.g. tensorflow-cpu has
no aarch64 wheel). An aarch64 lock is constrained by its x86_64 twin, so both pin the same versions of the
packages they share: one set of versions, two sets of wheels.
"""

from __future__ import annotations

from tfdock_host.settings import ROOT

REQUIREMENTS = ROOT / "requirements"
# The image has Python 3.11; the host tools must install anywhere Python >= 3.10 runs.
X86_64 = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
# glibc 2.36, bookworm's: xprof (tensorboard-plugin-profile) has aarch64 wheels for manylinux_2_35 only.
AARCH64 = ["--python-version", "3.11", "--python-platform", "aarch64-manylinux_2_36"]
ANY_HOST = ["--universal", "--python-version", "3.10"]
# Docker's architecture names (the engine's `Arch`, BuildKit's TARGETARCH) -> the lock files' suffix, which
# is the image's `uname -m` (how the Dockerfile picks). runtime-gpu has no aarch64 lock: PyPI's aarch64
# tensorflow wheel is a CPU build (is_cuda_build False), so CUDA wheels beside it would be dead weight.
ARCHITECTURES = {"amd64": "", "arm64": ".aarch64"}
IMAGE_LOCKS = {"amd64": ("runtime-cpu", "runtime-gpu", "dev"), "arm64": ("runtime-cpu", "dev")}
# name -> (.in it compiles, platform options); in dependency order: dev is constrained by the runtime
# locks, host-test by the host lock, an aarch64 lock by its x86_64 twin.
LOCKS = {
    "runtime-cpu": ("runtime-cpu", X86_64),
    "runtime-gpu": ("runtime-gpu", X86_64),
    "dev": ("dev", X86_64),
    "runtime-cpu.aarch64": ("runtime-cpu", [*AARCH64, "--constraint", "runtime-cpu.txt"]),
    "dev.aarch64": ("dev", [*AARCH64, "--constraint", "dev.txt", "--constraint", "runtime-cpu.aarch64.txt"]),
    "host": ("host", ANY_HOST),
    "host-test": ("host-test", ANY_HOST),
}


def lock_name(name: str, arch: str) -> str:
    """`runtime-cpu` for arm64 -> `runtime-cpu.aarch64`."""
    return name + ARCHITECTURES[arch]


def compile_commands(upgrade: bool = False) -> list[list[str]]:
    # `-o`, as the existing locks' headers record it: a relock that changes nothing keeps them byte-identical.
    return [
        [
            "uv", "pip", "compile", "--quiet", "--generate-hashes", *platform,
            *(["--upgrade"] if upgrade else []),
            f"{source}.in", "-o", f"{name}.txt",
        ]
        for name, (source, platform) in LOCKS.items()
    ]  # fmt: skip
