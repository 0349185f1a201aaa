"""docker/unreferenced_libraries.py, run as install-lock.sh runs it, on a small tree laid out like the gpu
lock's: ELF files that name libraries the ways the real ones do (TensorFlow's loader a tail-merged "cusolver",
cuDNN a `curandStateXORWOW` type, NVRTC's alt build its builtins, PyTorch's Python `libcurand.so.*`).
The real wheels' figures are in docs/images.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "unreferenced_libraries.py"


def elf(*strings: str) -> bytes:
    """An ELF file's magic, then NUL-terminated string literals, as its .rodata and .dynstr hold them."""
    return b"\x7fELF\x02\x01\x01\0" + b"".join(s.encode() + b"\0" for s in strings)


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def unreferenced(site: Path) -> list[str]:
    out = subprocess.run([sys.executable, str(SCRIPT), str(site)], capture_output=True, check=True).stdout
    return sorted(Path(p).relative_to(site).as_posix() for p in out.decode().split("\0") if p)


GPU_LIKE = {
    "tensorflow/libtensorflow_cc.so.2": elf("google_initializer_module_register_cusolver", "libcudnn.so.9"),
    "nvidia/cusolver/lib/libcusolver.so.11": elf("libcusolver.so.11", "libcusparse.so.12"),
    "nvidia/cusolver/lib/libcusolverMg.so.11": elf("libcusolverMg.so.11", "libcusolver.so.11"),
    "nvidia/cusolver/include/cusolverMg.h": b'#include "cusolverMg.h" /* libcusolverMg.so */',
    "nvidia/cusparse/lib/libcusparse.so.12": elf("libcusparse.so.12"),
    "nvidia/cudnn/lib/libcudnn.so.9": elf("libcudnn.so.9", "libnvrtc.so.12", "_Z4initP17curandStateXORWOW"),
    "nvidia/curand/lib/libcurand.so.10": elf("libcurand.so.10"),
    "nvidia/cuda_nvrtc/lib/libnvrtc.so.12": elf("libnvrtc.so.12", "libnvrtc-builtins.so.12.9"),
    "nvidia/cuda_nvrtc/lib/libnvrtc-builtins.so.12.9": elf("libnvrtc-builtins.so.12.9"),
    "nvidia/cuda_nvrtc/lib/libnvrtc.alt.so.12": elf("libnvrtc.alt.so.12", "libnvrtc-builtins.alt.so.12.9"),
    "nvidia/cuda_nvrtc/lib/libnvrtc-builtins.alt.so.12.9": elf("libnvrtc-builtins.alt.so.12.9"),
    "tensorflow/tools/pip_package/setup.py": b"REQUIRED = [f'nvidia-curand{cuda_wheel_suffix}']\n",
    "tensorflow/libunused.so": elf("no one names me"),
}


def test_what_nothing_names_goes_with_what_only_it_names(tmp_path):
    site = tree(tmp_path, GPU_LIKE)
    assert unreferenced(site) == [
        "nvidia/cuda_nvrtc/lib/libnvrtc-builtins.alt.so.12.9",  # named only by the alt build, which goes
        "nvidia/cuda_nvrtc/lib/libnvrtc.alt.so.12",
        "nvidia/curand/lib/libcurand.so.10",  # a type name, a header and a wheel list load nothing
        "nvidia/cusolver/lib/libcusolverMg.so.11",  # its own header names it, no loader does
    ]


def test_a_package_that_loads_a_library_keeps_it(tmp_path):
    """A lock that adds a user of cuRAND (PyTorch preloads it from Python; a binary names it) keeps it."""
    by_python = {**GPU_LIKE, "torch/__init__.py": b'_preload_cuda_deps("curand", "libcurand.so.*[0-9]")\n'}
    assert "nvidia/curand/lib/libcurand.so.10" not in unreferenced(tree(tmp_path / "python", by_python))
    by_binary = {**GPU_LIKE, "cupy/cuda/curand.so": elf("curand")}
    assert "nvidia/curand/lib/libcurand.so.10" not in unreferenced(tree(tmp_path / "binary", by_binary))


def test_a_tree_without_nvidia_libraries_loses_nothing(tmp_path):
    """The cpu locks' trees: only NVIDIA's wheels are looked at."""
    site = tree(tmp_path, {"tensorflow/libunused.so": elf("nothing"), "numpy/core.so": elf("libm.so.6")})
    assert unreferenced(site) == []
