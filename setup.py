"""Build script: compiles the Cython twins in ``_native/`` into ``scp2p``.

Environment:
  SCP2P_NO_EXTENSIONS=1       build nothing native (pure-Python twins only)
  SCP2P_REQUIRE_EXTENSIONS=1  a failed native build is an error (CI, wheels)
Otherwise a failed native build prints a clear warning and the pure twins are used.
"""

import os
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent

# _native/<source>.pyx -> importable module name (sources that do not exist yet are skipped)
NATIVE_MODULES = {
    "codec": "scp2p.wire._codec_c",
    "routing": "scp2p.dht._routing_c",
    "search": "scp2p.search._index_c",
    "datapath": "scp2p.transport._datapath_c",
}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "yes", "true", "on"}


NO_EXTENSIONS = _flag("SCP2P_NO_EXTENSIONS")
REQUIRE_EXTENSIONS = _flag("SCP2P_REQUIRE_EXTENSIONS") or _flag("CIBUILDWHEEL")


def _extensions():
    if NO_EXTENSIONS:
        print("scp2p: SCP2P_NO_EXTENSIONS=1, building the pure-Python twins only")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        print("scp2p: WARNING: Cython is not installed; using the pure-Python twins", file=sys.stderr)
        return []
    exts = []
    for src, modname in NATIVE_MODULES.items():
        if not (HERE / "_native" / f"{src}.pyx").exists():
            continue
        args = ["/O2"] if sys.platform == "win32" else ["-O3"]
        exts.append(Extension(modname, [f"_native/{src}.pyx"], include_dirs=["_native"], extra_compile_args=args))
    return cythonize(
        exts,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )


class OptionalBuildExt(build_ext):
    """Native twins are optional locally and mandatory in CI and wheel builds."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - reported, then re-raised or tolerated
            self._failed(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc, ext.name)

    def _failed(self, exc, name="extensions"):
        if REQUIRE_EXTENSIONS:
            raise exc
        print(
            f"scp2p: WARNING: could not build native module {name} ({exc}); "
            "the pure-Python twin will be used (slower).",
            file=sys.stderr,
        )


class BuildPyWithVectors(build_py):
    """Ship the conformance vectors inside the package (one source of truth: conformance/)."""

    def run(self):
        super().run()
        src = HERE / "conformance" / "vectors.json"
        if src.exists():
            dst = Path(self.build_lib) / "scp2p" / "conformance" / "vectors.json"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


setup(
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithVectors},
)
