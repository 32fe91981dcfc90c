"""The built-in shapes dataset: deterministic, exact masks and boxes, atomic writes, a reusable cache."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import yolo.data.synthetic as syn
from tests.helpers import ROOT
from yolo.errors import InputError


def _tight(mask):
    ys, xs = np.nonzero(mask)  # brute force, independent of synthetic.mask_box
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_same_seed_same_sample_bit_for_bit():
    a, b, c = syn.make_sample(7, 128), syn.make_sample(7, 128), syn.make_sample(8, 128)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("size", [160, (96, 200)])
def test_boxes_are_tight_around_disjoint_uniformly_painted_masks(size):
    n_objects = 0
    for seed in range(25):
        img, labels, masks = syn.make_sample(seed, size)
        h, w = img.shape[:2]
        assert img.dtype == np.uint8 and img.shape == (h, w, 3) and (h, w) == ((size, size) if isinstance(size, int) else size)
        assert labels.dtype == np.float32 and labels.shape == (len(masks), 5) and masks.shape[1:] == (h, w)
        assert (masks.sum(0) <= 1).all(), "visible masks overlap"
        for (cls, *box), mask in zip(labels, masks):
            assert 0 <= cls < len(syn.SHAPES_NAMES)
            assert box == _tight(mask)
            side = max(box[2] - box[0], box[3] - box[1])
            assert 3 <= side <= 0.56 * min(h, w) + 2
            # the mask is exactly the pixels painted in the object's colour (plus +-2 noise)
            assert np.ptp(img[mask].astype(int), axis=0).max() <= 4
            n_objects += 1
    assert n_objects > 40


def test_write_dataset_layout_and_labels(tmp_path):
    root = syn.write_dataset(tmp_path / "ds", 3, 2, 96, seed=5, workers=1)
    assert sorted(p.name for p in (root / "images" / "train").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert len(list((root / "labels" / "val").iterdir())) == 2
    assert (root / "names.txt").read_text().split() == syn.SHAPES_NAMES
    _, labels, _ = syn.make_sample(syn._sample_seed(5, 1, 1), 96)
    rows = np.loadtxt(root / "labels" / "val" / "000001.txt", ndmin=2)
    x1, y1, x2, y2 = labels[:, 1:].T
    expected = np.stack([labels[:, 0], (x1 + x2) / 192, (y1 + y2) / 192, (x2 - x1) / 96, (y2 - y1) / 96], 1)
    np.testing.assert_allclose(rows, expected, atol=6e-7)
    with pytest.raises(FileExistsError):
        syn.write_dataset(root, 1, 1, 96, seed=5, workers=1)


def test_write_dataset_parallel_is_identical(tmp_path):
    a = syn.write_dataset(tmp_path / "a", 70, 3, 64, seed=1, workers=1)
    b = syn.write_dataset(tmp_path / "b", 70, 3, 64, seed=1, workers=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 147
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_write_dataset_failure_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = syn.make_sample

    def failing(seed, size):
        calls.append(seed)
        if len(calls) == 4:
            raise RuntimeError("disk full")
        return real(seed, size)

    monkeypatch.setattr(syn, "make_sample", failing)
    with pytest.raises(RuntimeError):
        syn.write_dataset(tmp_path / "ds", 5, 2, 64, seed=0, workers=1)
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor its temporary folder


def test_ensure_synthetic_reuses_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_CACHE_DIR", str(tmp_path))
    spec = {"kind": "shapes", "train": 4, "val": 2, "size": 64, "seed": 3}
    root = syn.ensure_synthetic(spec, syn.SHAPES_NAMES)
    assert root.parent == tmp_path and len(list((root / "images" / "train").iterdir())) == 4
    stamp = (root / "images" / "train" / "000000.png").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("regenerated")

    monkeypatch.setattr(syn, "write_dataset", boom)
    assert syn.ensure_synthetic(dict(spec), syn.SHAPES_NAMES) == root
    assert (root / "images" / "train" / "000000.png").stat().st_mtime_ns == stamp
    with pytest.raises(AssertionError):  # a different spec is a different dataset
        syn.ensure_synthetic({**spec, "seed": 4}, syn.SHAPES_NAMES)


@pytest.mark.parametrize("spec, key", [({"kind": "shapes", "trian": 5}, "synthetic.trian"),
                                       ({"kind": "faces"}, "synthetic.kind"),
                                       ({"train": -1}, "synthetic.train"),
                                       ({"size": 8}, "synthetic.size"),
                                       ({"size": [64, "x"]}, "synthetic.size"),
                                       ({"seed": True}, "synthetic.seed")])
def test_bad_specs_name_the_file_and_key(spec, key, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_CACHE_DIR", str(tmp_path))
    with pytest.raises(InputError, match=rf"^data/shapes.yaml: {key}"):
        syn.ensure_synthetic(spec, syn.SHAPES_NAMES)
    with pytest.raises(InputError, match="names"):
        syn.ensure_synthetic({}, ["a", "b"])
    assert list(tmp_path.iterdir()) == []


def test_shipped_yaml_is_valid():
    cfg = yaml.safe_load((ROOT / "data" / "shapes.yaml").read_text())
    spec = syn.validate_spec(cfg["synthetic"], cfg["names"])
    assert spec["kind"] == "shapes" and spec["train"] >= 100
