"""Fast checks of the packaging files: build.spec, the trimming rules, the build script, the icons.

No PyInstaller build here (it takes minutes): ``scripts/build_bundle.sh`` builds the bundle and runs
its self-test, after the test suite.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "build.spec"
BUILD_SCRIPT = ROOT / "scripts" / "build_bundle.sh"


def _load_bundle_trim():
    spec = importlib.util.spec_from_file_location("bundle_trim", ROOT / "resources" / "bundle_trim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bundle_trim = _load_bundle_trim()


def _spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def _call(tree: ast.Module, name: str) -> ast.Call:
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id == name]
    assert len(calls) == 1, f"build.spec should call {name}() once, found {len(calls)}"
    return calls[0]


def _keyword(call: ast.Call, name: str) -> ast.AST:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    raise AssertionError(f"{ast.unparse(call.func)}() has no {name}= argument")


def _assigned_list(tree: ast.Module, name: str) -> list[str]:
    """The string items of ``NAME = [...]`` and every ``NAME += [...]`` in the spec."""
    items: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            items += ast.literal_eval(node.value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            items += ast.literal_eval(node.value)
    return items


# --- build.spec -------------------------------------------------------------------------------------

def test_spec_is_a_onedir_build_of_the_app_entry_point_named_featdistill():
    tree = _spec_tree()
    analysis = _call(tree, "Analysis")
    assert ast.unparse(analysis.args[0]) == "[str(ENTRY)]"
    entry = next(node for node in ast.walk(tree) if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "ENTRY" for t in node.targets))
    assert ast.unparse(entry.value) == "ROOT / 'app' / '__main__.py'"
    assert (ROOT / "app" / "__main__.py").is_file()
    exe, collect = _call(tree, "EXE"), _call(tree, "COLLECT")
    # onedir: the executable leaves the binaries to COLLECT, which makes dist/featdistill/
    assert ast.literal_eval(_keyword(exe, "exclude_binaries")) is True
    name_assignment = next(node for node in ast.walk(tree) if isinstance(node, ast.Assign)
                           and any(isinstance(t, ast.Name) and t.id == "NAME" for t in node.targets))
    assert ast.literal_eval(name_assignment.value) == "featdistill"
    assert ast.unparse(_keyword(exe, "name")) == "NAME" and ast.unparse(_keyword(collect, "name")) == "NAME"


def test_spec_never_strips_everything_and_never_uses_upx():
    tree = _spec_tree()
    for name in ("EXE", "COLLECT"):
        call = _call(tree, name)
        assert ast.literal_eval(_keyword(call, "strip")) is False, f"{name}(strip=True) breaks numpy's OpenBLAS"
        assert ast.literal_eval(_keyword(call, "upx")) is False


def test_spec_excludes_dev_and_unused_packages_but_not_what_torch_optim_needs():
    excludes = set(_assigned_list(_spec_tree(), "EXCLUDES"))
    for unwanted in ("pytest", "pygments", "setuptools", "tkinter", "matplotlib", "scipy", "pandas",
                     "tensorboard", "pyqtgraph.opengl", "pyqtgraph.examples", "pyqtgraph.jupyter"):
        assert unwanted in excludes, f"{unwanted} should be excluded"
    for needed in ("torch._dynamo", "torch._inductor", "sympy", "torch.distributed", "torch", "PySide6", "numpy"):
        assert not any(needed == e or needed.startswith(e + ".") for e in excludes), f"{needed} must stay"


def test_spec_icon_files_exist_and_are_square_images():
    source = SPEC.read_text(encoding="utf-8")
    assert "icon.ico" in source and "icon.icns" in source
    for name, smallest in (("icon.png", 256), ("icon.ico", 16), ("icon.icns", 16)):
        with Image.open(ROOT / "resources" / name) as image:
            assert image.width == image.height >= smallest
    with Image.open(ROOT / "resources" / "icon.ico") as ico:
        assert {(16, 16), (32, 32), (256, 256)} <= set(ico.info["sizes"])


# --- trimming rules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dest", [
    "torch/test/test_jit", "torch/include/ATen/ATen.h", "torch/share/cmake/Torch/TorchConfig.cmake",
    "torch/bin/test_api", "torch/bin/protoc-3.13.0.0", "torch/lib/libjitbackend_test.so",
    "torch/lib/libtorchbind_test.so", "torch/lib/libbackend_with_compiler.so", "torch/lib/libaoti_custom_ops.so",
    "torch/lib/torchbind_test.dll",
    "PySide6/Qt/plugins/platformthemes/libqgtk3.so", "PySide6/Qt/plugins/tls/libqopensslbackend.so",
    "PySide6/Qt/plugins/egldeviceintegrations/libqeglfs-kms-integration.so",
    "PySide6/Qt/plugins/networkinformation/libqglib.so", "PySide6/Qt/plugins/platforms/libqvnc.so",
    "PySide6/Qt/plugins/platforms/libqlinuxfb.so", "PySide6/Qt/plugins/platforms/libqeglfs.so",
    "PySide6/Qt/plugins/platforms/libqminimalegl.so", "PySide6/plugins/platforms/qvnc.dll",
])
def test_developer_files_and_unused_qt_plugins_are_dropped_in_every_build(dest):
    assert bundle_trim.should_drop(dest, keep_cuda=False)
    assert bundle_trim.should_drop(dest, keep_cuda=True)


@pytest.mark.parametrize("dest", [
    "torch/bin/torch_shm_manager", "torch/lib/libtorch_cpu.so", "torch/lib/libtorch_python.so",
    "torch/lib/libc10.so", "torch/lib/libgomp.so.1", "torch/lib/libshm.so", "torch/lib/torch_cpu.dll",
    "torch/_inductor/codegen/common.py", "torch/_dynamo/__init__.py", "torch/distributed/__init__.py",
    "torch/testing/__init__.py", "torch/cuda/nccl.py", "torch/backends/cudnn/__init__.py",
    "PySide6/Qt/plugins/platforms/libqxcb.so", "PySide6/Qt/plugins/platforms/libqoffscreen.so",
    "PySide6/Qt/plugins/platforms/libqminimal.so", "PySide6/Qt/plugins/platforms/libqwayland.so",
    "PySide6/plugins/platforms/qwindows.dll", "PySide6/Qt/plugins/platforms/libqcocoa.dylib",
    "PySide6/Qt/plugins/imageformats/libqjpeg.so", "PySide6/Qt/plugins/xcbglintegrations/libqxcb-glx-integration.so",
    "PySide6/Qt/lib/libQt6Widgets.so.6", "numpy.libs/libscipy_openblas64_-32a4b2a6.so", "libpython3.11.so.1.0",
    "libcurl.so.4", "libcups.so.2", "resources/icon.png",
])
def test_what_the_app_runs_on_is_kept_in_every_build(dest):
    assert not bundle_trim.should_drop(dest, keep_cuda=False)
    assert not bundle_trim.should_drop(dest, keep_cuda=True)


@pytest.mark.parametrize("dest", [
    "nvidia/cudnn/lib/libcudnn.so.9", "nvidia/cublas/lib/libcublasLt.so.12", "nvidia/nccl/lib/libnccl.so.2",
    "torch/lib/libtorch_cuda.so", "torch/lib/libc10_cuda.so", "torch/lib/libcudart-d0da41ae.so.11.0",
    "torch/lib/cudnn64_9.dll", "torch/lib/cublas64_12.dll", "torch/lib/nvrtc64_120_0.dll",
    "torch/lib/libnvrtc-builtins.so.12.4", "triton/backends/nvidia/lib/libcuda.so",
])
def test_cuda_libraries_are_dropped_from_a_cpu_build_and_kept_in_a_cuda_build(dest):
    assert bundle_trim.should_drop(dest, keep_cuda=False)
    assert not bundle_trim.should_drop(dest, keep_cuda=True)


def test_split_tocs_drops_links_to_dropped_libraries_from_either_list():
    binaries = [
        ("PySide6/Qt/lib/libQt6Gui.so.6", "/venv/PySide6/Qt/lib/libQt6Gui.so.6", "BINARY"),
        ("PySide6/Qt/lib/libQt6EglFSDeviceIntegration.so.6", "/venv/x/libQt6EglFSDeviceIntegration.so.6", "BINARY"),
        ("torch/lib/libtorch_cpu.so", "/venv/torch/lib/libtorch_cpu.so", "BINARY"),
    ]
    datas = [
        ("libQt6Gui.so.6", "PySide6/Qt/lib/libQt6Gui.so.6", "SYMLINK"),
        ("libQt6EglFSDeviceIntegration.so.6", "PySide6/Qt/lib/libQt6EglFSDeviceIntegration.so.6", "SYMLINK"),
        ("torch/lib/libshort.so", "libQt6Weird.so", "SYMLINK"),
        ("resources/icon.png", "/repo/resources/icon.png", "DATA"),
    ]
    kept_binaries, kept_datas, dropped = bundle_trim.split_tocs(
        binaries, datas, lambda dest: "EglFS" in dest)
    assert [d for d, _, _ in kept_binaries] == ["PySide6/Qt/lib/libQt6Gui.so.6", "torch/lib/libtorch_cpu.so"]
    assert [d for d, _, _ in kept_datas] == ["libQt6Gui.so.6", "torch/lib/libshort.so", "resources/icon.png"]
    assert sorted(d for d, _, _ in dropped) == [
        "PySide6/Qt/lib/libQt6EglFSDeviceIntegration.so.6", "libQt6EglFSDeviceIntegration.so.6"]


def test_split_tocs_resolves_links_relative_to_their_own_folder():
    binaries = [("torch/lib/libfoo.so.1", "/src/libfoo.so.1", "BINARY")]
    datas = [("torch/lib/libfoo.so", "libfoo.so.1", "SYMLINK")]
    kept_binaries, kept_datas, dropped = bundle_trim.split_tocs(binaries, datas, lambda dest: dest.endswith(".so.1"))
    assert kept_binaries == [] and kept_datas == [] and len(dropped) == 2


def test_orphaned_libraries_are_those_only_dropped_binaries_load():
    # What ldd lists: every library loaded, directly or not.
    loads = {
        "/src/libqgtk3.so": {"libgtk-3.so.0", "libcairo.so.2", "libpixman-1.so.0", "libglib-2.0.so.0",
                             "libQt6Gui.so.6", "libfreetype.so.6"},
        "/src/libgtk-3.so.0": {"libcairo.so.2", "libpixman-1.so.0", "libglib-2.0.so.0"},
        "/src/libcairo.so.2": {"libpixman-1.so.0"},
        "/src/libQt6Gui.so.6": {"libglib-2.0.so.0", "libfreetype.so.6"},
        "/src/libqxcb.so": {"libQt6Gui.so.6", "libxcb.so.1", "libglib-2.0.so.0", "libfreetype.so.6"},
    }
    dependencies = lambda src: loads.get(src, set())  # noqa: E731
    dropped = [("PySide6/Qt/plugins/platformthemes/libqgtk3.so", "/src/libqgtk3.so", "BINARY")]
    kept = [
        ("libgtk-3.so.0", "/src/libgtk-3.so.0", "BINARY"),
        ("libcairo.so.2", "/src/libcairo.so.2", "BINARY"),
        ("libglib-2.0.so.0", "/src/libglib-2.0.so.0", "BINARY"),
        ("PySide6/Qt/lib/libQt6Gui.so.6", "/src/libQt6Gui.so.6", "BINARY"),
        ("PySide6/Qt/plugins/platforms/libqxcb.so", "/src/libqxcb.so", "BINARY"),
        ("libpython3.11.so.1.0", "/src/libpython3.11.so.1.0", "BINARY"),
        ("libgtk-3.so.0.link", "libgtk-3.so.0", "SYMLINK"),
    ]
    # glib and Qt6Gui are still needed by kept binaries; libpython was never needed by the dropped plugin.
    assert bundle_trim.orphaned_libraries(kept, dropped, dependencies) == {"libgtk-3.so.0", "libcairo.so.2"}
    assert bundle_trim.orphaned_libraries(kept, [], dependencies) == set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="strip_symbol_tables works on Linux only")
def test_strip_symbol_tables_copies_only_the_listed_torch_libraries(tmp_path):
    big = tmp_path / "libtorch_cpu.so"
    big.write_bytes(b"\0" * 1000)
    other = tmp_path / "libopenblas.so"
    other.write_bytes(b"\0" * 10)
    calls = []

    def fake_strip(command):
        calls.append(command)
        Path(command[-1]).write_bytes(b"\0" * 600)

    toc = [("torch/lib/libtorch_cpu.so", str(big), "BINARY"), ("numpy.libs/libopenblas.so", str(other), "BINARY")]
    stripped, saved = bundle_trim.strip_symbol_tables(toc, str(tmp_path / "work"), run=fake_strip)
    if not calls:
        pytest.skip("no strip tool on this machine")
    assert saved == 400 and len(calls) == 1 and calls[0][:2] == ["strip", "--strip-unneeded"]
    assert stripped[0][0] == "torch/lib/libtorch_cpu.so" and stripped[0][1] != str(big)
    assert Path(stripped[0][1]).parent == tmp_path / "work" / "stripped"
    assert stripped[1] == toc[1]
    assert big.stat().st_size == 1000, "the environment's own library must not be touched"


# --- build script ---------------------------------------------------------------------------------

def test_build_script_is_executable_valid_bash_and_tests_the_bundle_in_an_empty_environment():
    assert BUILD_SCRIPT.stat().st_mode & stat.S_IXUSR
    subprocess.run(["bash", "-n", str(BUILD_SCRIPT)], check=True)
    text = BUILD_SCRIPT.read_text(encoding="utf-8")
    assert "--noconfirm --clean build.spec" in text
    assert "env -i PATH=/usr/bin:/bin" in text and "--self-test --screenshot" in text
    assert "set -euo pipefail" in text


def test_build_script_without_a_bundle_fails_with_a_clear_message(tmp_path):
    # A copy of the repository's scripts folder without dist/: --no-build must refuse, not pass silently.
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "build_bundle.sh").write_text(BUILD_SCRIPT.read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        ["bash", str(scripts / "build_bundle.sh"), "--no-build"], capture_output=True, text=True,
        env={**os.environ, "FEATDISTILL_BUILD_PYTHON": sys.executable}, timeout=30,
    )
    assert result.returncode != 0
    assert "no bundle at dist/featdistill/featdistill" in result.stderr


def test_launch_benchmark_exists_and_parses():
    bench = ROOT / "benchmarks" / "bench_bundle_launch.py"
    ast.parse(bench.read_text(encoding="utf-8"))
