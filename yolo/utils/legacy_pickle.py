"""Read legacy whole-model pickles (``{'model': <nn.Module>, ...}``) without running any of their code.

Toolkits of the cfg era (ultralytics/yolov3's ``models.Darknet``, eriklindernoren's) saved whole pickled
models. ``torch.load(weights_only=True)`` rightly refuses them; this reader gets their weights out instead:

- a global the pickle names is never imported. ``find_class`` hands back either one of a short list of
  known-safe callables (the tensor rebuild functions of ``torch._utils``, ``OrderedDict``, ``set``,
  ``torch.Size``, dtypes, numpy's array and scalar constructors, ``_codecs.encode`` of latin-1 text, a
  ``pathlib`` path), each as a fresh wrapper made for this load, or an inert stand-in class named after the
  global;
- a stand-in can be created the way pickle creates instances of classes (``NEWOBJ``, ``copyreg``'s
  reconstructor) and takes its ``__dict__`` state as data, but calling one (``REDUCE``, what a ``__reduce__``
  returning a function does) is refused, and so is any global of ``os``, ``builtins``, ``subprocess``, ...;
- the result is turned into plain data: a stand-in of an ``nn.Module`` becomes its state dict (the keys
  ``nn.Module.state_dict`` would give, from its ``_parameters``, ``_buffers`` and ``_modules``), a numpy
  array a numpy array, any other stand-in a dict of its state plus ``"__class__"``.
"""

from __future__ import annotations

import pickle
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Modules whose globals are refused outright (anything they name would be a way to run code or touch the
# system). Stand-ins already make every other name inert; this list makes the refusal early and clear.
DANGEROUS_MODULES = frozenset({
    "builtins", "os", "posix", "nt", "sys", "subprocess", "shutil", "socket", "importlib", "runpy",
    "code", "codeop", "types", "ctypes", "pickle", "_pickle", "cPickle", "marshal", "io", "_io", "pty", "platform",
    "webbrowser", "multiprocessing", "threading", "_thread", "signal", "operator", "_operator", "functools",
    "inspect", "pdb", "commands", "popen2", "tempfile", "glob", "asyncio", "timeit", "cProfile", "profile",
    "trace", "sysconfig", "site", "pip", "setuptools", "distutils", "urllib", "http", "ftplib", "smtplib",
    "xmlrpc", "zipimport", "pkgutil", "copy", "posixpath", "ntpath",
})
SAFE_BUILTINS = {"set": set, "frozenset": frozenset, "complex": complex, "bytearray": bytearray, "slice": slice}
PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg", "exceptions": "builtins"}
NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
MAX_DEPTH = 200


class RefusedGlobal(Exception):
    """The pickle names (or would call) a global this reader does not run; ``name`` is ``module.qualname``."""

    def __init__(self, name: str, how: str):
        super().__init__(f"refused global {name} ({how})")
        self.name = name


# ----------------------------------------------------------------------------- stand-ins


class _StandInMeta(type):
    def __call__(cls, *args, **kwargs):  # REDUCE / INST with arguments: that would run the class's code
        raise RefusedGlobal(cls._global, "called with arguments by the pickle")


class StandIn(metaclass=_StandInMeta):
    """An inert object in place of an instance of a pickled class: it only keeps the state it is given."""

    _global = "?"

    def __new__(cls, *args, **kwargs):  # NEWOBJ: cls.__new__(cls, *args) without running any __init__
        obj = object.__new__(cls)
        obj.__dict__["_state"] = None
        return obj

    def __setstate__(self, state):  # BUILD
        self.__dict__["_state"] = state

    def __setattr__(self, name, value):
        raise RefusedGlobal(self._global, f"attribute {name} set by the pickle")

    def __repr__(self) -> str:
        return f"<stand-in {self._global}>"


def _stand_in(full_name: str) -> type:
    return _StandInMeta(full_name.rsplit(".", 1)[-1], (StandIn,), {"_global": full_name, "__module__": __name__,
                                                                    "__qualname__": full_name})


class _NumpyDtype(StandIn):
    _global = "numpy.dtype"


class _NumpyArray(StandIn):
    _global = "numpy.ndarray"


# ----------------------------------------------------------------------------- known-safe callables


def _np_dtype(d) -> np.dtype | None:
    """A plain numeric numpy dtype from a pickled ``numpy.dtype`` stand-in, else None."""
    if not isinstance(d, _NumpyDtype) or not isinstance(d._args, tuple) or not d._args or \
            not isinstance(d._args[0], str):
        return None
    try:
        dt = np.dtype(d._args[0])
    except TypeError:
        return None
    if dt.kind not in "biufc":
        return None
    state = d._state
    if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">"):
        dt = dt.newbyteorder(state[1])
    return dt


def _safe_callables() -> dict[str, Any]:
    """``{module.name: callable}``: fresh wrappers for one load (a pickle's BUILD on one touches only it)."""
    from torch import _utils

    def tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        t = _utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())
        return t.detach()

    def tensor_v1(storage, offset, size, stride):
        return _utils._rebuild_tensor(storage, offset, size, stride).detach()

    def parameter(data, requires_grad=False, hooks=None, state=None):
        if not isinstance(data, torch.Tensor):
            raise RefusedGlobal("torch._utils._rebuild_parameter", "called on something that is not a tensor")
        return data.detach()

    def from_type_v2(func, new_type, args, state):
        if func not in wrappers.values() or not isinstance(args, tuple):
            raise RefusedGlobal("torch._tensor._rebuild_from_type_v2", "asked to call something that is not a "
                                                                      "tensor rebuild")
        return func(*args)

    def codecs_encode(text, encoding="utf-8"):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise RefusedGlobal("_codecs.encode", "called with something other than latin-1 text")
        return text.encode("latin1")

    def np_dtype(*args):
        d = _NumpyDtype.__new__(_NumpyDtype)
        d.__dict__["_args"] = args
        return d

    def np_reconstruct(*args):
        return _NumpyArray.__new__(_NumpyArray)

    def np_scalar(dtype, data=None):
        dt = _np_dtype(dtype)
        if dt is None or not isinstance(data, bytes) or len(data) != dt.itemsize:
            return None
        return np.frombuffer(data, dt)[0].item()

    def path(*parts):
        if not all(isinstance(p, str) for p in parts):
            raise RefusedGlobal("pathlib.Path", "called with something other than text")
        return str(Path(*parts))

    wrappers: dict[str, Any] = {
        "torch._utils._rebuild_tensor_v2": tensor_v2,
        "torch._utils._rebuild_tensor": tensor_v1,
        "torch._utils._rebuild_parameter": parameter,
        "torch._utils._rebuild_parameter_with_state": parameter,
        "torch._tensor._rebuild_from_type_v2": from_type_v2,
        "torch.Size": lambda *args: torch.Size(*args),
        "torch.device": lambda *args: torch.device(*args),
        "collections.OrderedDict": OrderedDict,
        "_codecs.encode": codecs_encode,
        "numpy.dtype": np_dtype,
        **{f"{m}._reconstruct": np_reconstruct for m in NUMPY_MODULES},
        **{f"{m}.scalar": np_scalar for m in NUMPY_MODULES},
        **{f"pathlib.{n}": path for n in ("Path", "PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath")},
        **{f"builtins.{n}": f for n, f in SAFE_BUILTINS.items()},
    }
    return wrappers


def _copyreg_reconstructor(cls, base, state):
    """``copyreg._reconstructor`` (protocols 0 and 1) for stand-ins only: a new inert instance."""
    if not (isinstance(cls, type) and issubclass(cls, StandIn)) or base is not object or state is not None:
        raise RefusedGlobal("copyreg._reconstructor", "asked to build something other than a plain object")
    return cls.__new__(cls)


def _copyreg_newobj(cls, *args):
    if not (isinstance(cls, type) and issubclass(cls, StandIn)):
        raise RefusedGlobal("copyreg.__newobj__", "asked to build something other than a plain object")
    return cls.__new__(cls)


# ----------------------------------------------------------------------------- the unpickler


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` never imports: known-safe wrappers or inert stand-ins."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._wrappers = _safe_callables()
        self._stand_ins: dict[str, type] = {}
        self.stand_ins_made: list[str] = []

    def find_class(self, module: str, name: str):
        module = PY2_MODULES.get(module, module)  # protocol-2 pickles name builtins as Python 2 did
        full = f"{module}.{name}"
        if full in self._wrappers:
            return self._wrappers[full]
        if full == "copyreg._reconstructor":
            return _copyreg_reconstructor
        if full == "copyreg.__newobj__":
            return _copyreg_newobj
        if module == "torch" and isinstance(torch.__dict__.get(name), (torch.dtype, torch.layout,
                                                                         torch.memory_format)):
            return torch.__dict__[name]
        if module.split(".")[0] in DANGEROUS_MODULES or full.startswith(("torch._C", "torch.ops", "torch.hub",
                                                                           "torch.jit")):
            raise RefusedGlobal(full, "a function that could run code")
        if full in ("numpy.ndarray",):
            return _NumpyArray
        if full not in self._stand_ins:
            self._stand_ins[full] = _stand_in(full)
            self.stand_ins_made.append(full)
        return self._stand_ins[full]


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` needs: ``Unpickler`` and ``load``; also counts the stand-ins."""

    def __init__(self):
        self.stand_ins: list[str] = []
        module = self

        class CountingUnpickler(Unpickler):
            def load(self):
                try:
                    return super().load()
                finally:
                    module.stand_ins.extend(n for n in self.stand_ins_made if n not in module.stand_ins)

        self.Unpickler = CountingUnpickler
        self.__name__ = __name__

    def load(self, f, **kwargs):
        return self.Unpickler(f, **kwargs).load()


# ----------------------------------------------------------------------------- stand-ins -> plain data


def _state_dict_of(obj: StandIn) -> dict | None:
    """The ``__dict__`` state a stand-in was given, if it is a dict (the slot part of a tuple state ignored)."""
    state = obj._state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
        state = state[0]
    return state if isinstance(state, dict) else None


def _is_module(state: dict | None) -> bool:
    return state is not None and all(isinstance(state.get(k), dict) for k in ("_parameters", "_buffers", "_modules"))


def module_state_dict(obj: StandIn, prefix: str = "", out: OrderedDict | None = None, depth: int = 0
                      ) -> OrderedDict:
    """``nn.Module.state_dict()`` of a stand-in module: parameters, persistent buffers, then each child."""
    out = OrderedDict() if out is None else out
    if depth > MAX_DEPTH:
        raise ValueError("modules nested too deep")
    state = _state_dict_of(obj)
    skip = state.get("_non_persistent_buffers_set") or ()
    for group in ("_parameters", "_buffers"):
        for name, t in state[group].items():
            if isinstance(t, torch.Tensor) and not (group == "_buffers" and name in skip):
                out[prefix + str(name)] = t.detach()
    for name, child in state["_modules"].items():
        if isinstance(child, StandIn) and _is_module(_state_dict_of(child)):
            module_state_dict(child, f"{prefix}{name}.", out, depth + 1)
    return out


def _numpy_array(obj: _NumpyArray) -> np.ndarray | None:
    state = obj._state
    if not (isinstance(state, tuple) and len(state) == 5):
        return None
    _, shape, dtype, fortran, raw = state
    dt = _np_dtype(dtype)
    if dt is None or not isinstance(raw, (bytes, bytearray)) or not isinstance(shape, tuple):
        return None
    arr = np.frombuffer(bytes(raw), dt)
    return arr.reshape(shape, order="F" if fortran else "C").copy() if arr.size == int(np.prod(shape)) else None


def plain(obj, depth: int = 0, seen: dict | None = None):
    """Tensors, numbers, strings, lists, tuples and dicts as they are; stand-ins turned into plain data."""
    seen = {} if seen is None else seen
    if depth > MAX_DEPTH:
        return None
    if isinstance(obj, (torch.Tensor, str, bytes, int, float, complex, bool, type(None), np.ndarray)):
        return obj
    if id(obj) in seen:
        return seen[id(obj)]
    seen[id(obj)] = None  # a cycle reads as None
    if isinstance(obj, dict):
        out = {k: plain(v, depth + 1, seen) for k, v in obj.items()}
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = [plain(v, depth + 1, seen) for v in obj]
        out = tuple(items) if isinstance(obj, tuple) else items
    elif isinstance(obj, _NumpyArray):
        out = _numpy_array(obj)
    elif isinstance(obj, StandIn):
        state = _state_dict_of(obj)
        if _is_module(state):
            out = module_state_dict(obj)
        else:
            out = {"__class__": obj._global, **({str(k): plain(v, depth + 1, seen) for k, v in state.items()}
                                               if state else {})}
    else:  # dtypes, devices, sizes
        out = obj
    seen[id(obj)] = out
    return out


def load_legacy(path: str | Path) -> tuple[Any, list[str]]:
    """Load a whole-model pickle as plain data; returns it and the globals read as stand-ins.

    Raises :class:`RefusedGlobal` when the pickle would call code; other exceptions for unreadable files.
    """
    module = _PickleModule()
    with warnings.catch_warnings():  # old torch.save files make torch warn that stand-ins have no source
        warnings.simplefilter("ignore")
        obj = torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=module)
    return plain(obj), sorted(module.stand_ins)
