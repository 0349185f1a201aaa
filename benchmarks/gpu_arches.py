"""Which GPU architectures a library's CUDA kernels were built for: SASS (cubin, runs as is on that compute
capability and later minors of the same major) and PTX (JIT-compiled by the driver for any newer GPU),
read from the `.nv_fatbin` sections of ELF shared objects, not guessed from strings.

    python benchmarks/gpu_arches.py FILE_OR_DIR [...]   # e.g. an unpacked TensorFlow wheel

A fat binary is a header (magic 0xBA55ED50, version, header size, size of what follows) and entries, each
with a kind (1 = PTX, 2 = ELF cubin), its header size, its payload size and the sm architecture number.
Prints one line per library with kernels, and the union; exit 1 if no file had a `.nv_fatbin` section.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
KINDS = {1: "PTX", 2: "SASS"}
ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True, order=True)
class Kernel:
    kind: str  # "PTX" or "SASS"
    arch: int  # 90 for sm_90 / compute_90


def sections(path: Path) -> dict[str, tuple[int, int]]:
    """Name -> (file offset, size) of every section of a 64-bit little-endian ELF file (amd64 and arm64);
    {} for any other file."""
    with path.open("rb") as file:
        header = file.read(64)
        if len(header) < 64 or header[:4] != ELF_MAGIC or header[4] != 2 or header[5] != 1:
            return {}
        (shoff,) = struct.unpack_from("<Q", header, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", header, 0x3A)
        file.seek(shoff)
        table = file.read(shentsize * shnum)
        entries = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
        if shstrndx >= len(entries):
            return {}
        file.seek(entries[shstrndx][4])
        names = file.read(entries[shstrndx][5])
    return {
        names[name_offset:].split(b"\0", 1)[0].decode(errors="replace"): (offset, size)
        for name_offset, _type, _flags, _addr, offset, size in entries
    }


def fatbin_section(path: Path) -> bytes:
    """The `.nv_fatbin` section of a 64-bit little-endian ELF file, b"" when it has none."""
    found = sections(path).get(".nv_fatbin")
    if found is None:
        return b""
    offset, size = found
    with path.open("rb") as file:
        file.seek(offset)
        return file.read(size)


def kernels(section: bytes) -> Iterator[Kernel]:
    """Every entry of every fat binary in a `.nv_fatbin` section (they follow one another, 8-aligned)."""
    offset = 0
    while offset + 16 <= len(section):
        magic, _version, header_size, fat_size = struct.unpack_from("<IHHQ", section, offset)
        if magic != FATBIN_MAGIC:
            offset += 8
            continue
        entry, end = offset + header_size, offset + header_size + fat_size
        while entry + 32 <= end:
            kind, _entry_version, entry_header, payload = struct.unpack_from("<HHIQ", section, entry)
            (arch,) = struct.unpack_from("<I", section, entry + 28)
            if kind in KINDS:
                yield Kernel(KINDS[kind], arch)
            if entry_header == 0:
                break
            entry += entry_header + payload
        offset = end


def libraries(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        yield from (p for p in candidates if p.is_file() and not p.is_symlink() and ".so" in p.name)


def describe(found: set[Kernel]) -> str:
    by_kind = {kind: sorted({k.arch for k in found if k.kind == kind}) for kind in ("SASS", "PTX")}
    return "; ".join(
        f"{kind} " + (", ".join(f"{'sm' if kind == 'SASS' else 'compute'}_{a}" for a in arches) or "none")
        for kind, arches in by_kind.items()
    )


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    union: set[Kernel] = set()
    for library in libraries([Path(arg) for arg in argv]):
        found = set(kernels(fatbin_section(library)))
        if found:
            union |= found
            print(f"{library}: {describe(found)}")
    if not union:
        print("no .nv_fatbin section in any file given: no CUDA kernels", file=sys.stderr)
        return 1
    print(f"all: {describe(union)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
