"""The PEP 517 build backend of the Python package ssock (see pyproject.toml).

    pip install .                 (offline: it needs nothing from any index)

It needs only the standard library, CMake and a C compiler: the _ssock
extension is built by the project's one build system (CMake, target
ssock_python, the same one `make` builds) for the interpreter that runs pip,
and put in a wheel with the pure-Python modules of python/ssock. That is why
it exists instead of setuptools: setuptools would need the `wheel` package
(not everywhere, and not installable without an index) and a second
description of the build.
"""
import base64
import csv
import hashlib
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "python", "ssock")
NAME = "ssock"
SUMMARY = ("TCP/UDP servers and clients that keep message boundaries (libssock), with "
           "drop-ins for simplesockets 0.0.8 and tinyproto 3.0")


def _version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        return re.search(r"project\(ssock VERSION ([0-9.]+)", f.read()).group(1)


def _tag():
    """cp311-cp311-linux_x86_64: this interpreter, its ABI, this platform."""
    soabi = sysconfig.get_config_var("SOABI")  # cpython-311-x86_64-linux-gnu
    if sys.implementation.name != "cpython" or not soabi:
        raise RuntimeError("ssock's extension is for CPython")
    interp = f"cp{sys.version_info.major}{sys.version_info.minor}"
    abi = "cp" + soabi.split("-")[1]  # cp311, or cp311d for a debug build
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"{interp}-{abi}-{plat}"


def _build_extension(scratch):
    """Builds _ssock with CMake; returns the path of the module."""
    build = os.path.join(scratch, "cmake")
    subprocess.check_call([
        "cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DSSOCK_TESTS=OFF",
        "-DSSOCK_EXAMPLES=OFF", "-DSSOCK_PYTHON=ON",
        f"-DSSOCK_PYTHON_EXECUTABLE={sys.executable}"], stdout=sys.stderr)
    subprocess.check_call(["cmake", "--build", build, "--target", "ssock_python", "-j",
                           str(os.cpu_count() or 1)], stdout=sys.stderr)
    path = os.path.join(build, "python", "ssock", "_ssock" + sysconfig.get_config_var("EXT_SUFFIX"))
    if not os.path.exists(path):
        raise RuntimeError(f"CMake built no {path}: are the headers of {sys.executable} "
                           "installed (Debian: python3-dev)?")
    return path


def _package_files():
    """(path in the wheel, path on disk) of the pure-Python part."""
    for top, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in sorted(files):
            if name.endswith((".py", ".pyi")) or name == "py.typed":
                path = os.path.join(top, name)
                yield os.path.relpath(path, os.path.dirname(PACKAGE)), path


def _metadata():
    return (f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {_version()}\n"
            f"Summary: {SUMMARY}\nRequires-Python: >=3.10\n")


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [arcname, f"sha256={digest}", str(len(data))]


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    version, tag = _version(), _tag()
    dist_info = f"{NAME}-{version}.dist-info"
    wheel_name = f"{NAME}-{version}-{tag}.whl"
    with tempfile.TemporaryDirectory(prefix="ssock-wheel-") as scratch:
        module = _build_extension(scratch)
        entries = list(_package_files())
        entries.append((os.path.join("ssock", os.path.basename(module)), module))
        records = []
        with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w",
                             zipfile.ZIP_DEFLATED) as whl:
            for arcname, path in entries:
                with open(path, "rb") as f:
                    data = f.read()
                whl.writestr(arcname, data)
                records.append(_record_line(arcname, data))
            meta = {
                "METADATA": _metadata().encode(),
                "WHEEL": (f"Wheel-Version: 1.0\nGenerator: ssock_build\n"
                          f"Root-Is-Purelib: false\nTag: {tag}\n").encode(),
                "top_level.txt": b"ssock\n",
            }
            for name, data in meta.items():
                whl.writestr(f"{dist_info}/{name}", data)
                records.append(_record_line(f"{dist_info}/{name}", data))
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(records + [[f"{dist_info}/RECORD", "", ""]])
            whl.writestr(f"{dist_info}/RECORD", out.getvalue())
    return wheel_name


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def _source_files():
    """The checkout's files (git's list when there is one), build dirs aside."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True,
                             check=True).stdout
        return [p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for top, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if not d.startswith(("build", ".git", "__pycache__"))]
            files += [os.path.relpath(os.path.join(top, n), ROOT) for n in names]
        return files


def build_sdist(sdist_directory, config_settings=None):
    base = f"{NAME}-{_version()}"
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tar:
        for rel in _source_files():
            tar.add(os.path.join(ROOT, rel), arcname=f"{base}/{rel}", recursive=False)
        info = _metadata().encode()
        ti = tarfile.TarInfo(f"{base}/PKG-INFO")
        ti.size = len(info)
        tar.addfile(ti, io.BytesIO(info))
    return name
