"""NVIDIA's shared libraries in an installed tree that nothing in the tree can load: prints their paths,
NUL-separated, for install-lock.sh to delete (docs/images.md: what goes and why it is safe).

    python3 unreferenced_libraries.py SITE_PACKAGES

A library is loaded by its name: a DT_NEEDED entry or a dlopen string (TensorFlow's loader builds
"lib" + "cufft" + ".so." + version, and a linker may merge "cufft" into the tail of a longer literal). So a
library of `nvidia/*/lib` whose stem ("cusolverMg" of libcusolverMg.so.11) occurs in no other file of the
tree, as a whole name or the tail of one (the next byte no letter, digit or `_`, so "curandStateXORWOW",
a type in cuDNN's kernels, names no library), can never be loaded. Candidates are taken until none is left,
since a library named only by another candidate goes with it (NVRTC's alt build names its builtins).
Anything a package added to the same lock names (PyTorch's libraries name cuRAND) stays; the dev tree is
not consulted for the runtime tree (nothing of the gpu dev image names a library this leaves out).
"""

from __future__ import annotations

import mmap
import os
import re
import sys
from pathlib import Path

ELF_MAGIC = b"\x7fELF"


def nvidia_libraries(site: Path) -> dict[Path, str]:
    """Each ELF shared object of NVIDIA's wheels (`nvidia/<package>/lib`) -> its stem: no "lib", no ".so"."""
    found = {}
    for path in sorted(site.glob("nvidia/*/lib/lib*.so*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as file:
                if file.read(4) == ELF_MAGIC:
                    found[path] = path.name[len("lib") :].split(".so", 1)[0]
    return found


def names_in(path: Path, in_binary: re.Pattern[bytes], in_python: re.Pattern[bytes]) -> set[str]:
    """The stems this file may load: named in an ELF file, or as a file name (`libcurand.so`) in Python,
    which loads with ctypes. Nothing else loads a library: a compiler reads headers, setup.py lists wheels."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size == 0:
        return set()
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pattern = in_binary if data[:4] == ELF_MAGIC else in_python if path.suffix == ".py" else None
        return {match.decode() for match in pattern.findall(data)} if pattern else set()


def unreferenced(site: Path) -> list[Path]:
    libraries = nvidia_libraries(site)
    if not libraries:
        return []
    stems = sorted(set(libraries.values()), key=len, reverse=True)  # the longest first: cusolverMg, cusolver
    alternatives = b"(" + b"|".join(re.escape(stem.encode()) for stem in stems) + b")"
    in_binary = re.compile(alternatives + rb"(?![A-Za-z0-9_])")
    in_python = re.compile(b"lib" + alternatives + rb"\.so")
    named_by = {
        Path(root, name): names_in(Path(root, name), in_binary, in_python)
        for root, _dirs, files in os.walk(site)
        for name in files
    }
    removed: set[Path] = set()
    while True:
        named = {
            stem
            for path, stems in named_by.items()
            if path not in removed
            for stem in stems - {libraries.get(path)}
        }
        newly = {path for path, stem in libraries.items() if path not in removed and stem not in named}
        if not newly:
            return sorted(removed)
        removed |= newly


if __name__ == "__main__":
    for library in unreferenced(Path(sys.argv[1])):
        sys.stdout.write(f"{library}\0")
