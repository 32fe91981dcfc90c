"""Build hook: the wheel carries the repository's top-level ``cfg/`` and ``data/`` (the one copy in git) as
``yolo/_builtin/cfg`` and ``yolo/_builtin/data``, which ``yolo.resources`` reads. Everything else about the
package is in pyproject.toml. Every file matching ``BUILTIN``'s patterns goes in; there is no hand list.
An editable install copies nothing: ``yolo.resources`` reads the checkout's folders directly."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUILTIN = {"cfg": ("*.cfg", "README*", "train/*.yaml"), "data": ("*.yaml", "*.names")}


def builtin_files(top: Path) -> list[Path]:
    """The built-in files under ``top`` (relative to it), sorted."""
    return sorted({p.relative_to(top) for folder, patterns in BUILTIN.items() for pattern in patterns
                   for p in (top / folder).glob(pattern) if p.is_file()})


class BuildPyWithBuiltins(build_py):
    """``build_py`` that also copies the built-in cfgs and data into ``<build_lib>/yolo/_builtin``."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        top = Path(__file__).resolve().parent
        for rel in builtin_files(top):
            target = Path(self.build_lib, "yolo", "_builtin", rel)
            self.mkpath(str(target.parent))
            self.copy_file(str(top / rel), str(target))


setup(cmdclass={"build_py": BuildPyWithBuiltins})
