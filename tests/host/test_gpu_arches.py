"""benchmarks/gpu_arches.py reads the architectures of CUDA kernels from an ELF's `.nv_fatbin` section: here
on a small ELF file made the way nvcc lays it out (sections, fat binaries 8-aligned, entries of each kind)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_arches

ENTRY_HEADER = 64


def fat_binary(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A fat binary: header, then (kind, arch, payload) entries, each with nvcc's 64-byte entry header."""
    body = b""
    for kind, arch, payload in entries:
        header = struct.pack("<HHIQII", kind, 0x101, ENTRY_HEADER, len(payload), 0, 0)
        header += struct.pack("<HHI", 0, 8, arch).ljust(ENTRY_HEADER - len(header), b"\0")
        body += header + payload
    return struct.pack("<IHHQ", gpu_arches.FATBIN_MAGIC, 1, 16, len(body)) + body


def elf_with(sections: dict[str, bytes]) -> bytes:
    """A 64-bit little-endian ELF with the given sections (a null one and .shstrtab added)."""
    names = b"\0" + b"".join(name.encode() + b"\0" for name in [*sections, ".shstrtab"])
    contents = [*sections.values(), names]
    data, offsets = b"", []
    for content in contents:
        offsets.append(64 + len(data))
        data += content + b"\0" * (-len(content) % 8)
    shoff = 64 + len(data)
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(contents) + 1,
                          len(contents))  # fmt: skip
    table = b"\0" * 64
    name_offset = 1
    for name, content, offset in zip([*sections, ".shstrtab"], contents, offsets, strict=True):
        table += struct.pack("<IIQQQQIIQQ", name_offset, 1, 2, 0, offset, len(content), 0, 0, 8, 0)
        name_offset += len(name) + 1
    return header + data + table


def test_sass_and_ptx_arches_of_every_fat_binary_in_the_section(tmp_path):
    first = fat_binary([(2, 80, b"\x7fELF cubin" * 3), (2, 90, b"cubin"), (1, 90, b".version 8.3\0")])
    second = fat_binary([(2, 60, b"c" * 40), (1, 52, b".target sm_52\0")])
    library = tmp_path / "libkernels.so.2"
    library.write_bytes(elf_with({".text": b"\x90" * 24, ".nv_fatbin": first + b"\0" * 8 + second}))

    found = set(gpu_arches.kernels(gpu_arches.fatbin_section(library)))

    assert found == {
        gpu_arches.Kernel("SASS", 60),
        gpu_arches.Kernel("SASS", 80),
        gpu_arches.Kernel("SASS", 90),
        gpu_arches.Kernel("PTX", 52),
        gpu_arches.Kernel("PTX", 90),
    }
    assert gpu_arches.describe(found) == "SASS sm_60, sm_80, sm_90; PTX compute_52, compute_90"


def test_a_library_without_cuda_kernels_has_none_and_the_tool_says_so(tmp_path, capsys):
    (tmp_path / "libplain.so").write_bytes(elf_with({".text": b"\x90" * 16}))
    (tmp_path / "notes.so.txt").write_text("not an ELF file")

    assert gpu_arches.fatbin_section(tmp_path / "libplain.so") == b""
    assert gpu_arches.main([str(tmp_path)]) == 1
    assert "no .nv_fatbin section" in capsys.readouterr().err


def test_the_tool_lists_each_library_and_the_union(tmp_path, capsys):
    kernels = fat_binary([(2, 89, b"cubin"), (1, 90, b"ptx\0")])
    (tmp_path / "libtf.so.2").write_bytes(elf_with({".nv_fatbin": kernels}))

    assert gpu_arches.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{tmp_path / 'libtf.so.2'}: SASS sm_89; PTX compute_90",
        "all: SASS sm_89; PTX compute_90",
    ]
