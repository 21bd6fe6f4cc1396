"""Rules that keep the PyInstaller bundle lean; ``build.spec`` applies them to its Analysis.

PyInstaller describes what goes into a bundle as a table of contents: a list of entries
``(dest_name, src_name, typecode)``, where ``dest_name`` is the path inside the bundle (for example
``torch/lib/libtorch_cpu.so``), ``src_name`` the file on disk and ``typecode`` one of ``BINARY``,
``EXTENSION``, ``DATA``, ``SYMLINK`` (whose ``src_name`` is the link's target, relative to its folder)...

The rules work on ``dest_name`` only, so the same rules trim a CPU bundle and a CUDA bundle, on Linux,
Windows and macOS, whatever the exact file list of the torch or Qt build at hand:

* torch: no ``torch/test``, ``torch/include``, ``torch/share`` (CMake files), no ``torch/bin`` tools
  except ``torch_shm_manager`` (``import torch`` fails without it on Linux), no test libraries in
  ``torch/lib`` (``libjitbackend_test``, ``libtorchbind_test``, ``libbackend_with_compiler``,
  ``libaoti_custom_ops``).
* CUDA: libraries of the CUDA toolkit, cuDNN, NCCL and the ``nvidia`` pip packages are dropped only
  when the torch being bundled has no GPU support (``torch.version.cuda`` and ``torch.version.hip`` are
  None); with a CUDA torch they all stay.
* Qt: no plugin folders the window never loads (platform themes, which drag in GTK; EGL device
  integrations; network information; TLS; QML tooling; SQL drivers; designer; the Wayland compositor
  side) and no platform plugins for framebuffers, VNC and EGL full-screen. Kept: ``xcb``, ``wayland``,
  ``offscreen``, ``minimal`` on Linux, ``windows`` on Windows, ``cocoa`` on macOS, and the image formats.
* Libraries that only dropped files needed (found with ``ldd`` on Linux): see
  :func:`orphaned_libraries`.
* ``libtorch_cpu`` and ``libtorch_python`` lose their symbol tables (~100 MB), on a copy, on Linux: see
  :func:`strip_symbol_tables`.

Measured effect on a CPU build (torch 2.13.0+cpu, PySide6-Essentials 6.12): see the packaging section
of the README.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import sys
from pathlib import Path, PurePath
from typing import Callable, Iterable

TocEntry = tuple[str, str, str]

TORCH_DEVELOPER_FOLDERS = ("test", "include", "share")
TORCH_TOOLS_KEPT = ("torch_shm_manager",)
TORCH_TEST_LIBRARIES = ("jitbackend_test", "torchbind_test", "backend_with_compiler", "aoti_custom_ops")

# Library names (lower case, without a "lib" prefix) of the CUDA toolkit, cuDNN, NCCL and torch's CUDA parts.
CUDA_LIBRARY_PREFIXES = (
    "cudart", "cublas", "cufft", "curand", "cusolver", "cusparse", "cudnn", "cupti", "cufile", "nccl",
    "nvrtc", "nvjitlink", "nvtoolsext", "nvshmem", "torch_cuda", "c10_cuda", "caffe2_nvrtc",
)
CUDA_PACKAGE_FOLDERS = ("nvidia", "triton")

# Stripped of their symbol tables on a copy (Linux): see strip_symbol_tables.
STRIPPED_TORCH_LIBRARIES = ("torch_cpu", "torch_python")

QT_PLUGIN_FOLDERS_DROPPED = (
    "platformthemes", "egldeviceintegrations", "networkinformation", "tls", "qmltooling", "sqldrivers",
    "designer", "wayland-graphics-integration-server",
)
QT_PLATFORMS_DROPPED = ("vnc", "linuxfb", "eglfs", "minimalegl", "vkkhrdisplay")


def library_stem(file_name: str) -> str:
    """``libtorch_cuda.so.2`` -> ``torch_cuda``; ``cudnn64_9.dll`` -> ``cudnn64_9``: lower case, no prefix or suffix."""
    name = file_name.lower()
    if name.startswith("lib"):
        name = name[3:]
    return name.split(".", 1)[0]


def is_cuda_library(dest_name: str) -> bool:
    """A file of the CUDA runtime stack: under ``nvidia/`` or ``triton/``, or named like a CUDA library."""
    parts = PurePath(dest_name).parts
    if not parts:
        return False
    if parts[0] in CUDA_PACKAGE_FOLDERS:
        return True
    return is_shared_library(parts[-1]) and library_stem(parts[-1]).startswith(CUDA_LIBRARY_PREFIXES)


def is_shared_library(file_name: str) -> bool:
    """``.so``, ``.so.N``, ``.dll``, ``.dylib`` by name (``nccl.py`` is not one)."""
    name = file_name.lower()
    return name.endswith((".so", ".dll", ".dylib")) or ".so." in name


def is_torch_developer_file(dest_name: str) -> bool:
    """Headers, CMake files, tests, test libraries and tools of torch that a running app never uses."""
    parts = PurePath(dest_name).parts
    if len(parts) < 3 or parts[0] != "torch":
        return False
    folder, file_name = parts[1], parts[-1]
    if folder in TORCH_DEVELOPER_FOLDERS:
        return True
    if folder == "bin":
        return file_name.split(".", 1)[0] not in TORCH_TOOLS_KEPT
    if folder == "lib":
        return is_shared_library(file_name) and library_stem(file_name).startswith(TORCH_TEST_LIBRARIES)
    return False


def is_unused_qt_plugin(dest_name: str) -> bool:
    """A Qt plugin in a dropped plugin folder, or a platform plugin the app never runs on."""
    parts = PurePath(dest_name).parts
    if "plugins" not in parts:
        return False
    index = parts.index("plugins")
    # PySide6/Qt/plugins/... on Linux and macOS, PySide6/plugins/... on Windows.
    if not any(part.lower().startswith(("pyside", "pyqt")) for part in parts[:index]) or len(parts) < index + 3:
        return False
    folder, file_name = parts[index + 1], parts[-1]
    if folder in QT_PLUGIN_FOLDERS_DROPPED:
        return True
    if folder == "platforms":
        platform = library_stem(file_name)
        platform = platform[1:] if platform.startswith("q") else platform
        return platform in QT_PLATFORMS_DROPPED
    return False


def should_drop(dest_name: str, keep_cuda: bool) -> bool:
    """True when ``dest_name`` does not belong in the bundle (``keep_cuda``: the bundled torch has GPU support)."""
    if is_torch_developer_file(dest_name) or is_unused_qt_plugin(dest_name):
        return True
    return not keep_cuda and is_cuda_library(dest_name)


def split_tocs(binaries: Iterable[TocEntry], datas: Iterable[TocEntry],
               drop: Callable[[str], bool]) -> tuple[list[TocEntry], list[TocEntry], list[TocEntry]]:
    """``(binaries kept, datas kept, dropped)``: drop every entry for which ``drop(dest_name)`` is true.

    Both lists are needed at once: PyInstaller lists the top-level symbolic links to libraries in
    ``datas`` (``libQt6Gui.so.6 -> PySide6/Qt/lib/libQt6Gui.so.6``), and a link whose target is dropped
    is dropped with it, so the bundle holds no dangling links.
    """
    binaries, datas = list(binaries), list(datas)
    dropped_names = {_normal(dest) for dest, _src, typecode in binaries + datas if typecode != "SYMLINK" and drop(dest)}

    def gone(entry: TocEntry) -> bool:
        dest, src, typecode = entry
        if _normal(dest) in dropped_names or drop(dest):
            return True
        # A SYMLINK's src_name is its target, relative to the bundle's top folder for the links
        # PyInstaller makes, in general relative to the link's own folder.
        return typecode == "SYMLINK" and (
            _normal(src) in dropped_names
            or _normal(posixpath.join(posixpath.dirname(_normal(dest)), _normal(src))) in dropped_names
        )

    dropped = [entry for entry in binaries + datas if gone(entry)]
    return [e for e in binaries if not gone(e)], [e for e in datas if not gone(e)], dropped


def orphaned_libraries(kept: list[TocEntry], dropped: list[TocEntry],
                       dependencies: Callable[[str], Iterable[str]]) -> set[str]:
    """``dest_name`` of the kept libraries that only dropped files needed.

    PyInstaller collects a plugin's shared libraries before the spec can drop the plugin: the GTK
    platform theme brings GTK, cairo, pango, harfbuzz... With ``dependencies(src_name)`` the file
    names a binary loads, directly or not (``ldd``'s list on Linux):

        D = libraries the dropped binaries load
        K = kept binaries not in D, and every library they load
        orphans = kept binaries whose file name is in D and not in K
    """
    binary_types = {"BINARY", "EXTENSION"}
    needed_by_dropped = set()
    for _dest, src, typecode in dropped:
        if typecode in binary_types:
            needed_by_dropped.update(dependencies(src))
    if not needed_by_dropped:
        return set()
    needed_by_kept = set()
    for dest, src, typecode in kept:
        name = PurePath(dest).name
        if typecode in binary_types and name not in needed_by_dropped:
            needed_by_kept.add(name)
            needed_by_kept.update(dependencies(src))
    return {
        dest for dest, _src, typecode in kept
        if typecode == "BINARY" and PurePath(dest).name in needed_by_dropped - needed_by_kept
    }


def ldd_dependencies(src_name: str) -> set[str]:
    """File names of the shared libraries ``src_name`` loads, directly or not, as ``ldd`` resolves them."""
    from PyInstaller.depend import bindepend

    return {os.path.basename(path) for _name, path in bindepend.get_imports(src_name) if path}


def strip_symbol_tables(binaries: Iterable[TocEntry], workdir: str,
                        run: Callable[[list[str]], object] = subprocess.check_call) -> tuple[list[TocEntry], int]:
    """Point the entries of torch's largest libraries at copies without symbol tables; ``(toc, bytes saved)``.

    ``libtorch_cpu`` carries ~90 MB of ``.symtab``/``.strtab``, which the dynamic loader never reads
    (it uses ``.dynsym``); ``strip --strip-unneeded`` on a copy in ``workdir`` removes them. Only the
    libraries in ``STRIPPED_TORCH_LIBRARIES``, never everything: PyInstaller's ``strip=True`` breaks
    numpy's bundled OpenBLAS ("ELF load command address/offset not page-aligned"). Linux only; without a
    ``strip`` tool the entries are left as they are.
    """
    binaries = list(binaries)
    if not sys.platform.startswith("linux") or shutil.which("strip") is None:
        return binaries, 0
    folder = Path(workdir) / "stripped"
    folder.mkdir(parents=True, exist_ok=True)
    result, saved = [], 0
    for dest, src, typecode in binaries:
        parts = PurePath(dest).parts
        if (typecode == "BINARY" and parts[:2] == ("torch", "lib") and is_shared_library(parts[-1])
                and library_stem(parts[-1]) in STRIPPED_TORCH_LIBRARIES):
            copy = folder / parts[-1]
            shutil.copy2(src, copy)
            run(["strip", "--strip-unneeded", str(copy)])
            saved += os.path.getsize(src) - os.path.getsize(copy)
            src = str(copy)
        result.append((dest, src, typecode))
    return result, saved


def _normal(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/"))


def total_size(toc: Iterable[TocEntry]) -> int:
    """Bytes of the files behind the entries (links and missing files count 0)."""
    size = 0
    for _dest, src, typecode in toc:
        if typecode != "SYMLINK" and os.path.isfile(src):
            size += os.path.getsize(src)
    return size
