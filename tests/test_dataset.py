"""DetectionDataset and the loader: exact validation mapping, rect batches, determinism, file quirks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from yolo.data.augment import AugmentConfig
from yolo.data.dataset import DetectionDataset
from yolo.data.index import DatasetIndex
from yolo.data.loader import MultiScale, build_loader, collate, to_device
from yolo.data.synthetic import write_dataset
from yolo.errors import InputError
from yolo.utils.boxes import cxcywh_to_xyxy, unletterbox_boxes
from yolo.utils.image import read_image


def _index(root, split="train"):
    images = sorted((root / "images" / split).glob("*.png"))
    labels = [np.loadtxt(root / "labels" / split / f"{p.stem}.txt", ndmin=2, dtype=np.float32).reshape(-1, 5)
              for p in images]
    return DatasetIndex(images, labels, ["circle", "rectangle", "triangle", "star", "cross"])


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("d") / "shapes", 12, 0, 128, seed=0, workers=1)
    return _index(root)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Images of several aspect ratios with one known box each: ``(index, boxes in pixels)``."""
    d = tmp_path_factory.mktemp("mixed")
    images, labels = [], []
    for k, (h, w) in enumerate([(100, 200), (240, 120), (90, 90), (60, 180), (200, 150)]):
        img = np.full((h, w, 3), 40, np.uint8)
        x1, y1, x2, y2 = w // 5, h // 4, w // 2, h - 5
        img[y1:y2, x1:x2] = (200, 30, 30)
        cv2.imwrite(str(d / f"{k}.png"), img)
        images.append(d / f"{k}.png")
        labels.append(np.float32([[k % 3, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]]))
    return DatasetIndex(images, labels, ["a", "b", "c"])


def test_validation_labels_map_back_to_the_original(mixed):
    ds = DetectionDataset(mixed, 160, train=False)
    for i in range(len(ds)):
        img, labels, path, info = ds[i]
        assert img.shape == (3, 160, 160) and img.dtype == torch.uint8 and labels.shape == (1, 6)
        orig = cv2.imread(path)[:, :, ::-1]
        assert info.shape == orig.shape[:2]
        box = cxcywh_to_xyxy(labels[:, 2:].double()) * 160
        back = unletterbox_boxes(box, info)[0].numpy()
        h, w = orig.shape[:2]
        cx, cy, bw, bh = mixed.labels[i][0, 1:]
        np.testing.assert_allclose(back, [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w,
                                          (cy + bh / 2) * h], atol=1e-3)
        red = (img[2] > 150) & (img[0] < 80)  # the painted box (written BGR (200, 30, 30): blue in RGB), resized: its tight box matches the label
        ys, xs = np.nonzero(red.numpy())
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box[0].numpy(), atol=1.5)


def test_rect_batches(mixed):
    ds = DetectionDataset(mixed, 160, rect=True, batch_size=2, stride=32)
    aspect = [read_image(mixed.images[j], "rgb").shape[0] / read_image(mixed.images[j], "rgb").shape[1] for j in ds.order]
    assert aspect == sorted(aspect) and sorted(ds.order.tolist()) == list(range(5))
    batches = list(build_loader(ds, 2, train=False, workers=0, seed=0))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    for b, (images, targets, paths, infos) in enumerate(batches):
        h, w = images.shape[2:]
        assert (h, w) == tuple(ds.batch_shapes[b]) and h % 32 == 0 and w % 32 == 0 and max(h, w) <= 160 + 32
        for info in infos:  # every image fits at long side 160, with less than 1.5 strides to spare
            sh, sw = info.shape[0] * info.scale[1], info.shape[1] * info.scale[0]
            assert round(max(sh, sw)) == 160 and sh <= h and sw <= w and min(h - sh, w - sw) < 48
        assert [str(mixed.images[j]) for j in ds.order[2 * b:2 * b + 2]] == paths


def _batches(ds, workers, epochs=(0, 1)):
    loader = build_loader(ds, 4, train=True, workers=workers, seed=3)
    out = []
    for e in epochs:
        ds.set_epoch(e)
        out += [(imgs.clone(), targets.clone(), paths) for imgs, targets, paths, _ in loader]
    return out


def test_training_batches_are_deterministic_across_workers(shapes):
    cfg = AugmentConfig(mixup=0.3, degrees=5)
    a = _batches(DetectionDataset(shapes, 128, cfg, train=True, seed=1), 0)
    b = _batches(DetectionDataset(shapes, 128, cfg, train=True, seed=1), 2)
    c = _batches(DetectionDataset(shapes, 128, cfg, train=True, seed=2), 0)
    assert len(a) == 6
    for (ia, ta, pa), (ib, tb, pb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ta, tb) and pa == pb
    assert not torch.equal(a[0][0], a[3][0]), "epochs 0 and 1 gave the same batch"
    assert not torch.equal(a[0][0], c[0][0])
    imgs, targets, _ = a[0]
    assert imgs.shape == (4, 3, 128, 128) and imgs.dtype == torch.uint8 and targets.shape[1] == 6
    assert set(targets[:, 0].tolist()) <= {0, 1, 2, 3} and (targets[:, 2:] >= 0).all() and (targets[:, 2:] <= 1).all()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_epoch_leaves_out_its_trained_batches_and_gets_the_rest_unchanged(shapes, workers):
    """The trainer's skip (yolo.train.engine._skip_batches) on the real loader: the next pass of epoch 1 leaves
    out its first 2 batches without loading them and yields exactly the other batches of a full pass; the pass
    after it is whole again."""
    from yolo.train.engine import _skip_batches

    cfg = AugmentConfig(mixup=0.3, degrees=5)
    full = _batches(DetectionDataset(shapes, 128, cfg, train=True, seed=1), workers, epochs=(1,))
    ds = DetectionDataset(shapes, 128, cfg, train=True, seed=1)
    loader = build_loader(ds, 4, train=True, workers=workers, seed=3)
    ds.set_epoch(1)
    assert _skip_batches(loader, 2)
    rest = [(imgs, targets, paths) for imgs, targets, paths, _ in loader]
    assert len(full) == 3 and len(rest) == 1
    assert torch.equal(rest[0][0], full[2][0]) and torch.equal(rest[0][1], full[2][1]) and rest[0][2] == full[2][2]
    assert len([b for b in loader]) == 3
    assert not _skip_batches([1, 2, 3], 2)  # a loader without such a sampler: the trainer drops them itself


def test_close_mosaic_reaches_persistent_workers(shapes):
    ds = DetectionDataset(shapes, 128, AugmentConfig(mosaic=1.0), train=True, seed=0)
    loader = build_loader(ds, 6, train=True, workers=1, seed=0)
    first = [info.shape for _, _, _, batch in [next(iter(loader))] for info in batch]
    ds.mosaic_enabled = False
    second = [info.shape for _, _, _, batch in [next(iter(loader))] for info in batch]
    assert set(first) == {(128, 128)} and set(second) == {(128, 128)}
    ds2 = DetectionDataset(shapes, 256, AugmentConfig(mosaic=1.0), train=True, seed=0)
    loader = build_loader(ds2, 6, train=True, workers=1, seed=0)
    assert {i.scale for b in [next(iter(loader))[3]] for i in b} == {(1.0, 1.0)}  # mosaics: identity
    ds2.mosaic_enabled = False
    assert {i.scale for b in [next(iter(loader))[3]] for i in b} == {(2.0, 2.0)}  # letterboxed 128 -> 256


def test_distributed_split_covers_the_dataset_once(shapes):
    ds = DetectionDataset(shapes, 128, train=False)
    paths = [p for r in (0, 1) for _, _, ps, _ in build_loader(ds, 4, False, 0, 0, rank=r, world_size=2) for p in ps]
    assert sorted(paths) == sorted(map(str, shapes.images))


def test_collate_to_device_and_multiscale():
    batch = [(torch.full((3, 64, 64), 255, dtype=torch.uint8), torch.tensor([[0, 1, .5, .5, .2, .2]]), "a", None),
             (torch.zeros((3, 64, 64), dtype=torch.uint8), torch.zeros((0, 6)), "b", None),
             (torch.zeros((3, 64, 64), dtype=torch.uint8), torch.tensor([[0, 2, .1, .1, .1, .1]] * 2), "c", None)]
    images, targets, paths, _ = collate(batch)
    assert images.shape == (3, 3, 64, 64) and targets[:, 0].tolist() == [0, 2, 2] and paths == ["a", "b", "c"]
    x, t = to_device(images, targets, "cpu")
    assert x.dtype == torch.float32 and x.max() == 1.0 and x.min() == 0.0 and t.dtype == torch.float32
    ms = MultiScale(416, every=3, seed=0)
    sizes = [ms.size(0, s) for s in range(60)]
    assert all(s % 32 == 0 and 208 <= s <= 624 for s in sizes) and len(set(sizes)) > 3
    assert sizes[:3] == [sizes[0]] * 3 and sizes == [MultiScale(416, every=3, seed=0).size(0, s) for s in range(60)]
    assert ms(x, 0, 0).shape[-1] == sizes[0]


def test_image_quirks(tmp_path):
    from PIL import Image, ImageOps

    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), rgb[:, :, 0])
    assert np.array_equal(read_image(tmp_path / "gray.png", "rgb"), np.repeat(rgb[:, :, :1], 3, 2))
    cv2.imwrite(str(tmp_path / "alpha.png"), np.dstack([rgb[:, :, ::-1], rgb[:, :, 0]]))
    assert np.array_equal(read_image(tmp_path / "alpha.png", "rgb"), rgb)
    cv2.imwrite(str(tmp_path / "deep.png"), rgb[:, :, ::-1].astype(np.uint16) * 257)
    assert np.abs(read_image(tmp_path / "deep.png", "rgb").astype(int) - rgb).max() <= 1
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", quality=95, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "rot.jpg")).convert("RGB"))
    got = read_image(tmp_path / "rot.jpg", "rgb")
    assert got.shape == (60, 40, 3) and np.abs(got.astype(int) - expected).mean() < 2


def test_unreadable_image_is_skipped_in_training_only(shapes, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    index = DatasetIndex([bad, *shapes.images[:3]], [np.zeros((0, 5), np.float32), *shapes.labels[:3]], shapes.names)
    ds = DetectionDataset(index, 128, AugmentConfig(mosaic=0), train=True, seed=0)
    from yolo.errors import YoloWarning

    with pytest.warns(YoloWarning, match="bad.png"):
        img, _, path, _ = ds[0]
    assert path != str(bad) and img.shape == (3, 128, 128) and ds.bad_images == [str(bad)]
    with pytest.raises(InputError, match="bad.png"):
        DetectionDataset(index, 128, train=False)[0]


def test_an_unreadable_image_among_mosaic_tiles_is_never_drawn_again(shapes, tmp_path):
    """The retry only redrew the main image, while the bad file kept coming back as a random mosaic tile: with
    one bad image among three, training stopped with "10 unreadable images in a row" naming a good file."""
    import warnings

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n damaged in the middle")
    index = DatasetIndex([shapes.images[0], bad, shapes.images[1]],
                         [shapes.labels[0], np.zeros((0, 5), np.float32), shapes.labels[1]], shapes.names)
    ds = DetectionDataset(index, 128, AugmentConfig(mosaic=1.0, mixup=0.5), train=True, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = [ds[(i % 3, epoch, True)][2] for epoch in range(20) for i in range(3)]  # 60 mosaics
    assert str(bad) not in paths and set(ds.bad_images) == {str(bad)}
    assert len(ds.bad_images) == 1  # found once, then never drawn again (in this process)
    only_bad = DatasetIndex([bad], [np.zeros((0, 5), np.float32)], shapes.names)
    with warnings.catch_warnings(), pytest.raises(InputError) as e:
        warnings.simplefilter("ignore")
        DetectionDataset(only_bad, 128, AugmentConfig(mosaic=1.0), train=True)[0]
    assert str(e.value) == f"{bad}: unreadable, the last of 10 unreadable images in a row (other samples drawn " \
                           "to replace unreadable ones were unreadable too)"
