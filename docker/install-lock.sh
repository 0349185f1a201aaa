#!/bin/sh
# Installs one lock's wheels for the image's architecture (BuildKit's TARGETARCH) into TREE, laid out like
# the venv (TREE/bin, TREE/share, TREE/lib/python3.11/site-packages), to be copied onto /opt/venv.
#
#   install-lock.sh STEM TREE [INSTALLED_STEM]
#
# It runs on the build machine's own architecture: pip only unpacks wheels (`--platform`, `--only-binary`),
# so an arm64 image built on amd64 installs natively instead of under emulation. Requirements that
# INSTALLED_STEM's lock already pins (the runtime's, for the dev tree) are left out: that tree has them.
# Then it prunes what no task, test, notebook, TensorBoard or the profiler uses (docs/images.md).
set -eu
started=$(date +%s)
stem=$1 tree=$2 installed=${3:-}
case "$TARGETARCH" in
  amd64) machine=x86_64 suffix="" ;;
  arm64) machine=aarch64 suffix=.aarch64 ;;
  *) machine=$TARGETARCH suffix=.$TARGETARCH ;;
esac
lock() { echo "/tmp/requirements/$1$suffix.txt"; }
[ -f "$(lock "$stem")" ] || { echo "no $stem$suffix.txt for $machine: variant ${VARIANT:-?} has no lock here" >&2; exit 1; }

# The lock's requirements without those of INSTALLED_STEM (same pins: the locks are constrained alike), and
# without two that are declared but never imported here: libclang (tensorflow's: it serves TF's own source
# generators) and duckdb (xprof's: only its CLI's events-db commands use it, never TensorBoard's profile tab).
python3 - "$(lock "$stem")" "${installed:+$(lock "$installed")}" >/tmp/requirements.txt <<'PY'
import re, sys
def blocks(path):
    """name==version -> the requirement's lines (hashes included)."""
    found, name = {}, None
    for line in open(path):
        if re.match(r"[A-Za-z0-9]", line):
            name = line.split(" ")[0].strip()
            found[name] = []
        if name and not line.lstrip().startswith("#"):
            found[name].append(line)
    return found
skip = set(blocks(sys.argv[2])) if sys.argv[2] else set()
for name, lines in blocks(sys.argv[1]).items():
    if name not in skip and not name.startswith(("libclang==", "duckdb==")):
        sys.stdout.write("".join(lines))
PY

# Every manylinux tag a wheel for bookworm (glibc 2.36) may carry: pip does not widen a given --platform.
platforms=""
for glibc in $(seq 17 36); do platforms="$platforms --platform manylinux_2_${glibc}_$machine"; done
site=$tree/lib/python3.11/site-packages
# shellcheck disable=SC2086  # one word per --platform
pip install --quiet --require-hashes --no-deps --only-binary=:all: --python-version 3.11 \
  --implementation cp --abi cp311 $platforms --platform "manylinux2014_$machine" \
  --target "$site" -r /tmp/requirements.txt
echo "install-lock.sh: $stem for $machine installed in $(( $(date +%s) - started )) s"
# --target puts the wheels' scripts and data (bin/, share/jupyter, etc/jupyter) beside the packages: move
# them where the venv has them. The scripts' shebang is this venv's /opt/venv/bin/python, as in the image.
for data in bin share etc include; do
  if [ -d "$site/$data" ]; then mv "$site/$data" "$tree/$data"; fi
done

# Lean: C++ headers for building custom ops, packages' own test suites (tf.test and keras's kept), Windows
# and macOS binaries (debugpy's attach helpers and their .pdb files, setuptools' launchers), and the
# .pyc of modules that a compiled extension beside them shadows (mypy's: the import system takes the .so).
rm -rf "$site/tensorflow/include"
find "$site" -depth -type d -name tests ! -path '*/tensorflow/*' ! -path '*/keras/*' -exec rm -rf {} +
find "$site" -type f \( -name '*.dll' -o -name '*.exe' -o -name '*.pdb' -o -name '*.dylib' \) -delete
python3 - "$site" <<'PY'
import glob, os, sys
for pyc in glob.glob(f"{sys.argv[1]}/**/__pycache__/*.cpython-311.pyc", recursive=True):
    module = os.path.join(os.path.dirname(os.path.dirname(pyc)), os.path.basename(pyc).split(".")[0])
    if glob.glob(glob.escape(module) + ".cpython-311-*.so") or os.path.exists(module + ".abi3.so"):
        os.remove(pyc)
PY
# The dev tree's own leftovers: the test suites of mypy, mypyc and tornado (named test/, not tests/),
# pydevd's Cython C sources (nothing compiles here: it runs its prebuilt .so) and its Windows-only
# winappdbg, JupyterLab's Playwright UI-test extension (galata), xprof's events-db library (its CLI's,
# beside duckdb), and JupyterLab's second copy of its app (the server serves share/jupyter/lab; the
# package's copy, for --core-mode, becomes a link to it).
if [ -n "$installed" ]; then
  rm -rf "$site/mypy/test" "$site/mypyc/test" "$site/tornado/test" "$site/jupyterlab/galata" \
    "$site/debugpy/_vendored/pydevd/pydevd_attach_to_process/winappdbg" "$site/xprof/convert/events_db"
  find "$site/debugpy" -type f -name '*.c' -delete
  for app in static schemas; do
    if diff -rq "$site/jupyterlab/$app" "$tree/share/jupyter/lab/$app" >/dev/null; then
      rm -rf "$site/jupyterlab/$app" && ln -s "../../../../share/jupyter/lab/$app" "$site/jupyterlab/$app"
    fi
  done
fi

# NVIDIA's libraries that no file of the tree names, so nothing can load them (the gpu lock's: cuSOLVER's
# multi-GPU cusolverMg, NVRTC's alt build, cuRAND, ...): a package that loads one names it and keeps it.
python3 /usr/local/bin/unreferenced_libraries.py "$site" | xargs -0 -r rm -v -- | sed 's/^/install-lock.sh: /'

# Symbol tables (.symtab, .strtab, and debug sections where a wheel kept them): dynamic symbols stay, so
# linking and dlopen do not change. Not of a wheel that auditwheel repaired (it grafted a *.libs directory
# and rewrote the wheel's ELF files with patchelf): strip corrupts those (numpy's OpenBLAS then fails to
# load: "ELF load command address/offset not page-aligned"). The runtime strips TensorFlow's (most of its
# symbol bytes: libtensorflow_cc 205 MB) and the dev tree all of its own, of the image's architecture only
# (debugpy's aarch64 wheel carries an x86-64 attach helper, which aarch64's strip cannot read).
python3 - "$site" "$machine" "$installed" <<'PY' | xargs -0 -r "$machine-linux-gnu-strip" --strip-unneeded
import glob, os, sys
site, everything = sys.argv[1], sys.argv[3] != ""  # the dev tree (installed over another): all
e_machine = {"x86_64": b"\x3e\x00", "aarch64": b"\xb7\x00"}[sys.argv[2]]  # ELF header bytes 18-19
for record in glob.glob(f"{site}/*.dist-info/RECORD"):
    files = [line.split(",")[0] for line in open(record)]
    if any(f.split("/")[0].endswith(".libs") for f in files):
        continue
    for path in (os.path.join(site, f) for f in files if everything or f.startswith("tensorflow/")):
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as file:
                header = file.read(20)
                if header[:4] == b"\x7fELF" and header[18:20] == e_machine:
                    sys.stdout.write(path + "\0")
PY
echo "install-lock.sh: $stem for $machine installed and pruned in $(( $(date +%s) - started )) s"
