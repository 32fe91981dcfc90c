"""Dataset descriptions -> ``DataConfig``: data YAML (YOLO txt or COCO json splits), darknet ``.data``.

``yolo.data.split.load_split`` turns one split of a ``DataConfig`` into a checked ``DatasetIndex``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from yolo.errors import InputError, read_text, warn
from yolo.resources import is_builtin, resolve
from yolo.utils.names import default_names, load_names
from yolo.data.yamlkeys import load_yaml

SPLITS = ("train", "val", "test")
YAML_KEYS = ("path", "train", "val", "test", "names", "nc", "format", "synthetic")
DARKNET_KEYS = ("classes", "train", "valid", "test", "names", "backup", "eval", "results", "map", "top")


@dataclass
class SplitSpec:
    """One split: image folders / list files (YOLO txt), or one images folder plus its COCO json."""

    sources: list[Path]
    annotations: Path | None = None


@dataclass
class DataConfig:
    """A dataset: ``root`` folder, split specs by name, class ``names`` (``nc`` of them), the file it came
    from, and ``format`` (``"yolo"`` or ``"coco"``)."""

    root: Path
    splits: dict[str, SplitSpec]
    names: list[str]
    nc: int
    source: str
    format: str = "yolo"

    @property
    def train(self) -> SplitSpec | None:
        return self.splits.get("train")

    @property
    def val(self) -> SplitSpec | None:
        return self.splits.get("val")

    @property
    def test(self) -> SplitSpec | None:
        return self.splits.get("test")


def load_data_config(path: str | Path) -> DataConfig:
    """Read a data YAML (``.yaml``/``.yml``), a darknet ``.data`` file, or a COCO ``instances_*.json``
    (its images expected in ``<json folder>/../<name after 'instances_'>``, e.g. ``val2017``, or in
    ``<json folder>/../images/<name>``). ``path`` may name a built-in dataset YAML (``shapes.yaml``,
    ``coco.yaml``; see ``yolo.resources``)."""
    path = resolve(path, "data")
    if not path.is_file():
        raise InputError("data file not found", str(path))
    if path.suffix == ".data":
        return _load_darknet_data(path)
    if path.suffix == ".json":
        name = path.stem.removeprefix("instances_")
        images = path.parent.parent / name
        if not images.is_dir() and (path.parent.parent / "images" / name).is_dir():
            images = path.parent.parent / "images" / name
        return coco_config(images, path)
    return _load_yaml(path)


def coco_config(images: str | Path, annotations: str | Path, split: str = "val",
                names: list[str] | None = None) -> DataConfig:
    """A one-split COCO dataset given on the command line: an images folder and its json."""
    images, annotations = Path(images), Path(annotations)
    config = DataConfig(images.parent, {split: SplitSpec([images], annotations)}, names or [], len(names or []),
                        str(annotations), "coco")
    if not names:
        _names_from_coco(config)
    return config


def _read_yaml(path: Path) -> dict:
    try:
        data, _ = load_yaml(read_text(path, "a data YAML"), str(path))  # a key given twice: an error
    except OSError as e:
        raise InputError(f"cannot read ({e})", str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(f"not valid YAML ({getattr(e, 'problem', None) or e})", str(path),
                         mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise InputError("a data YAML must be a mapping (keys path, train, val, test, names)", str(path))
    return data


def _load_yaml(path: Path) -> DataConfig:
    data = _read_yaml(path)
    unknown = sorted(str(k) for k in data if k not in YAML_KEYS)
    if unknown:
        warn(f"{path}: unknown key(s) {', '.join(unknown)} ignored; valid keys: {', '.join(YAML_KEYS)}")
    fmt = str(data.get("format", "yolo")).lower()
    if fmt not in ("yolo", "coco"):
        raise InputError(f"format must be yolo or coco, got {fmt!r}", str(path))
    # A built-in YAML lives inside the install: its relative ``path`` (coco.yaml: datasets/coco) is taken from
    # the working folder instead of its own.
    base = Path.cwd() if is_builtin(path) else path.parent
    root = base / str(data["path"]) if data.get("path") else path.parent
    names = _yaml_names(data.get("names"), data.get("nc"), path, required=fmt == "yolo" or "nc" in data)
    if data.get("synthetic") is not None:
        root, data = _synthetic_root(data, names, path), {"train": "images/train", "val": "images/val", **data}
    splits = {s: _split_spec(data[s], root, fmt, path, s) for s in SPLITS if data.get(s)}
    if not splits:
        raise InputError("no split given (train, val or test)", str(path))
    config = DataConfig(root, splits, names, len(names), str(path), fmt)
    if fmt == "coco" and not names:
        _names_from_coco(config)
    return config


def _yaml_names(names, nc, path: Path, required: bool) -> list[str]:
    if isinstance(names, str):  # a names file beside the YAML, else a built-in one (coco.names)
        names = load_names(resolve(names, "names", (path.parent,)))
    elif isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise InputError("names as a mapping needs integer ids {0: name, 1: name, ...}", str(path)) from None
        if ids != list(range(len(ids))):
            raise InputError("names ids must be 0..n-1 without gaps", str(path))
        names = [str(names.get(i, names.get(str(i)))) for i in ids]
    elif isinstance(names, list):
        names = [str(n) for n in names]
    elif names is None:
        if nc is None:
            if required:
                raise InputError("names missing (a list, a {id: name} mapping or a .names file)", str(path))
            return []
        names = default_names(_int(nc, "nc", path))
    else:
        raise InputError("names must be a list, a {id: name} mapping or a .names file", str(path))
    if nc is not None and _int(nc, "nc", path) != len(names):
        raise InputError(f"nc is {nc} but {len(names)} names are given", str(path))
    if not names:
        raise InputError("names is empty", str(path))
    return names


def _int(value, key: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"{key} must be a positive integer, got {value!r}", str(path))
    return value


def _split_spec(value, root: Path, fmt: str, path: Path, split: str) -> SplitSpec:
    if fmt == "coco":
        if not isinstance(value, dict) or set(value) != {"images", "annotations"}:
            raise InputError(f"{split}: a COCO split is {{images: folder, annotations: file.json}}", str(path))
        return SplitSpec([root / str(value["images"])], root / str(value["annotations"]))
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise InputError(f"{split}: a folder, a list file or a list of them expected", str(path))
    return SplitSpec([root / v for v in values])


def _synthetic_root(data: dict, names: list[str], path: Path) -> Path:
    spec = data["synthetic"]
    if not isinstance(spec, dict):
        raise InputError("synthetic must be a mapping of generator settings", str(path))
    try:
        from yolo.data.synthetic import ensure_synthetic
    except ImportError:
        raise InputError("synthetic datasets need yolo.data.synthetic, which this install lacks", str(path)) \
            from None
    return Path(ensure_synthetic(spec, names))


def _names_from_coco(config: DataConfig) -> None:
    """Fill ``names`` from the categories of the smallest-named split's json (val, then test, then train)."""
    from yolo.data.formats_coco import coco_names, load_coco_json

    spec = next(config.splits[s] for s in ("val", "test", "train", *config.splits) if s in config.splits)
    _, config.names = coco_names(load_coco_json(spec.annotations), spec.annotations)
    config.nc = len(config.names)


def _load_darknet_data(path: Path) -> DataConfig:
    values = _read_key_values(path)
    unknown = sorted(k for k in values if k not in DARKNET_KEYS)
    if unknown:
        warn(f"{path}: unknown key(s) {', '.join(unknown)} ignored; valid keys: {', '.join(DARKNET_KEYS)}")
    nc = None
    if "classes" in values:
        try:
            nc = _int(int(values["classes"][0]), "classes", path)
        except ValueError:
            raise InputError("classes must be an integer", str(path), values["classes"][1]) from None
    names = load_names(_darknet_path(values["names"][0], path)) if "names" in values else None
    if names is None:
        if nc is None:
            raise InputError("needs classes or names", str(path))
        names = default_names(nc)
    if nc is not None and nc != len(names):
        raise InputError(f"classes is {nc} but the names file has {len(names)} names", str(path),
                         values["classes"][1])
    splits = {s: SplitSpec([_darknet_path(values[k][0], path)])
              for s, k in (("train", "train"), ("val", "valid"), ("test", "test")) if k in values}
    if not splits:
        raise InputError("no split given (train, valid or test)", str(path))
    # a list file's relative lines: from its folder, the .data file's folder, then the working folder (darknet's)
    return DataConfig(path.parent.absolute(), splits, names, len(names), str(path), "yolo")


def _read_key_values(path: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for number, line in enumerate(read_text(path, "a darknet .data file").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise InputError("expected key = value", str(path), number)
        key, value = (s.strip() for s in line.split("=", 1))
        out[key] = (value, number)
    return out


def _darknet_path(value: str, data_file: Path) -> Path:
    """Relative to the working directory as darknet does, else relative to the ``.data`` file."""
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p
    beside = data_file.parent / p
    return beside if beside.exists() else p
