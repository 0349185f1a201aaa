"""TensorFlow's start-up notices, kept off the user's screen unless `--verbose` is given.

Importing TensorFlow 2.21 prints, twice (libtensorflow_framework and the Python wrapper each carry a copy
of absl's logging and each read TF_ENABLE_ONEDNN_OPTS once):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. You may see slightly different ...

Both come from absl's C++ LOG(INFO) in tensorflow/core/util/port.cc while the shared objects load, before
anything has called absl::InitializeLog(): absl then writes every message, whatever its severity, and
neither TF_CPP_MIN_LOG_LEVEL (TensorFlow's own threshold) nor TF_CPP_MAX_VLOG_LEVEL (VLOG only, off by
default) reaches it. The one environment switch that stops it, TF_ENABLE_ONEDNN_OPTS=0, also turns oneDNN's
kernels off: other numbers, other speed. So the import writes its stderr (file descriptor 2, where C++
writes) through a filter process that passes every line on, live, except exactly those two: a warning or
an error from the import still shows, in its place, and so does a fatal one that aborts the process (TF's
"compiled to use AVX" check does), since the filter outlives it. After the import nothing is filtered:
TF_CPP_MIN_LOG_LEVEL=1 (the image's default) keeps TensorFlow's warnings and errors, hides its INFO lines.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

VERBOSE_FLAG = "--verbose"
DEBUGGERS = {"debugpy", "pydevd"}
START_NOTICES = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    # absl's time before it is initialised: "00:00:<seconds since the epoch>.<microseconds>"
    r"|I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. "
)


# The filter, in a process of its own (-I -S: nothing of the user's site and no site-packages, a fast start).
# Raw fd reads and writes: each line goes out as soon as it is complete.
_FILTER = f"""
import os, re
notice = re.compile({START_NOTICES.pattern!r}.encode())
pending = b""
while chunk := os.read(0, 65536):
    *lines, pending = (pending + chunk).split(b"\\n")
    os.write(1, b"".join(line + b"\\n" for line in lines if not notice.match(line)))
if pending and not notice.match(pending):
    os.write(1, pending)
"""


@contextlib.contextmanager
def _stderr_held() -> Iterator[None]:
    """Meanwhile, what is written to file descriptor 2 goes through the filter, START_NOTICES left out."""
    sys.stderr.flush()
    try:
        real_stderr = os.dup(2)
    except OSError:  # no stderr to filter (closed): nothing to show either
        yield
        return
    read_end, write_end = os.pipe()
    filtering = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _FILTER], stdin=read_end, stdout=real_stderr, close_fds=True
    )
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # the pipe's last writer gone: the filter writes what is left and ends
        os.close(real_stderr)
        filtering.wait()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as Python would and runs its import with stderr held (once, then steps aside)."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec_module(module: ModuleType) -> None:
            with _stderr_held():
                exec_module(module)

        spec.loader.exec_module = quiet_exec_module  # type: ignore[method-assign]
        return spec


def install(argv: Sequence[str]) -> None:
    """Before TensorFlow is imported: hide its start-up notices, or with VERBOSE_FLAG in argv show them and
    TensorFlow's INFO logs too."""
    if "tensorflow" in sys.modules:
        return
    # Under a debugger (debugpy for `--debug`, pydevd for PyCharm) the filter process would become a debuggee
    # of its own that the IDE never configures, and the import would wait for it: show the notices instead.
    if VERBOSE_FLAG in argv or DEBUGGERS & sys.modules.keys():
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    sys.meta_path.insert(0, _QuietTensorFlowImport())
