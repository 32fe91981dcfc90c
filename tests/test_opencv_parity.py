"""Parity with OpenCV's darknet importer (an implementation nobody here wrote).

Random weights, BN statistics calibrated on a real photo, written as darknet ``.weights`` by our writer
and read by ``cv2.dnn.readNetFromDarknet``; both networks see the same (non-square) input.
OpenCV normalizes BN with eps 1e-6, so our model uses that eps here.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import CFG, calibrated_model, photo_batch

if not hasattr(cv2.dnn, "readNetFromDarknet"):  # removed in OpenCV 5; the dev extra pins 4.x
    pytest.skip("OpenCV without the darknet importer", allow_module_level=True)

OFFICIAL_WEIGHTS_BYTES = {"yolov3": 248_007_048, "yolov3-tiny": 35_434_956, "yolov3-spp": 252_209_544}
CASES = [("yolov3-tiny", 256, 320, False), ("yolov3", 320, 256, False), ("yolov3-spp", 256, 320, False),
         ("yolov3", 320, 256, True)]  # True: what detection runs (BN folded, channels-last, Winograd convs)


def _ours_in_opencv_order(model, raw: list[torch.Tensor]) -> np.ndarray:
    """Our rows go anchor, y, x per head; OpenCV's go y, x, anchor. -> ``[N, 5+C]`` in OpenCV order."""
    pred = model.decode(raw)[0]
    rows, start = [], 0
    for r in raw:
        a, h, w, n = r.shape[1:]
        block = pred[start:start + a * h * w].view(a, h, w, n).permute(1, 2, 0, 3).reshape(-1, n)
        rows.append(block)
        start += a * h * w
    return torch.cat(rows).numpy()


@pytest.mark.parametrize("name,height,width,optimized", CASES)
def test_matches_opencv(tmp_path, name, height, width, optimized):
    model = calibrated_model(CFG / f"{name}.cfg", seed=1, bn_eps=1e-6)
    weights = tmp_path / f"{name}.weights"
    model.save_darknet_weights(weights)
    assert os.path.getsize(weights) == OFFICIAL_WEIGHTS_BYTES[name]

    x = torch.flip(photo_batch(height, width, n=1), dims=[3]).contiguous()  # not the calibration image
    if optimized:
        from yolo.runtime.backends import TorchBackend

        backend = TorchBackend(calibrated_model(CFG / f"{name}.cfg", seed=1, bn_eps=1e-6))
        assert backend.winograd >= 10
        with torch.inference_mode():
            raw = backend.model(x.contiguous(memory_format=torch.channels_last))
    else:
        with torch.no_grad():
            raw = model(x)
    ours = _ours_in_opencv_order(model, raw)

    net = cv2.dnn.readNetFromDarknet(str(CFG / f"{name}.cfg"), str(weights))
    net.setInput(x.numpy())
    theirs = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    assert theirs.shape == ours.shape

    size = max(height, width)
    # OpenCV: box centre and size normalized by the input width/height
    xy = theirs[:, :2] * [width, height]
    wh = theirs[:, 2:4] * [width, height]
    assert np.abs(ours[:, :2] - xy).max() / size < 1e-4
    assert (np.abs(ours[:, 2:4] - wh) / wh).max() < 1e-3
    assert np.abs(ours[:, 4] - theirs[:, 4]).max() < 1e-4
    # OpenCV reports objectness x class probability and zeroes it at or under 0.2
    score = ours[:, 5:] * ours[:, 4:5]
    kept = score > 0.2 + 1e-3
    assert kept.mean() > 0.1, "too few class scores above OpenCV's threshold to compare"
    assert np.abs(score[kept] - theirs[:, 5:][kept]).max() < 1e-4
    assert (theirs[:, 5:][score < 0.2 - 1e-3] == 0).all()


def test_outputs_depend_on_the_pixels():
    """Calibrated statistics keep the input alive: swapping RGB and BGR changes the predictions a lot."""
    model = calibrated_model(CFG / "yolov3-tiny.cfg", seed=1)
    x = photo_batch(256, 320, n=1)
    with torch.no_grad():
        a = model.decode(model(x))[0]
        b = model.decode(model(x[:, [2, 1, 0]]))[0]
    obj_change = (a[:, 4] - b[:, 4]).abs()
    assert obj_change.mean() > 0.01 and obj_change.max() > 0.1
    assert ((a[:, :2] - b[:, :2]).abs().max(dim=1).values > 1.0).float().mean() > 0.1  # boxes move by pixels


def test_shortcut_from_the_previous_layer_matches_opencv(tmp_path):
    """``[shortcut] from=-1`` (and ``[scale_channels] from=-1``) adds the previous layer to itself, as darknet
    and OpenCV do; it passed the parser, then every forward ended in a bare KeyError."""
    cfg = tmp_path / "prev.cfg"
    cfg.write_text("[net]\nwidth=64\nheight=64\nchannels=3\n\n"
                   "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n"
                   "[shortcut]\nfrom=-1\nactivation=linear\n\n"
                   "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n\n"
                   "[convolutional]\nsize=1\nstride=1\npad=1\nfilters=21\nactivation=linear\n\n"
                   "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=2\nnum=3\n")
    model = calibrated_model(cfg, seed=2, bn_eps=1e-6, size=(64, 64))
    model.save_darknet_weights(tmp_path / "prev.weights")
    x = torch.flip(photo_batch(64, 96, n=1), dims=[3]).contiguous()
    with torch.no_grad():
        ours = _ours_in_opencv_order(model, model(x))
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(tmp_path / "prev.weights"))
    net.setInput(x.numpy())
    theirs = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    assert theirs.shape == ours.shape
    assert np.abs(ours[:, 4] - theirs[:, 4]).max() < 1e-4  # objectness
    assert np.abs(ours[:, :2] - theirs[:, :2] * [96, 64]).max() / 96 < 1e-4  # box centres


PADDED = ("[net]\nwidth=64\nheight=64\nchannels=3\n\n"
          "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n"
          "[maxpool]\nsize=3\nstride=2\npadding=0\n\n"  # 64 -> 31: off by one cell here...
          "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\n{pad}\nactivation=leaky\n\n"
          "[maxpool]\nsize=2\nstride=2\n\n"  # ...and back on the grid after this one, with pad=1 above
          "[convolutional]\nsize=1\nstride=1\npad=1\nfilters=21\nactivation=linear\n\n"
          "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=2\nnum=3\n")


def test_a_padding_that_moves_the_heads_grid_is_refused_and_one_that_does_not_matches_opencv(tmp_path):
    """``pad=0`` + ``padding=2`` gave a 9x9 grid for a 64x64 input at stride 8: darknet (and OpenCV) decode on
    that grid, ``(col + p) / 9 * 64``, ours on 8-pixel cells, so every box was off by up to 8 pixels, silently.
    Such a cfg is now refused naming the layer; one whose odd maps come back to input / stride is still read,
    and its boxes are OpenCV's."""
    from yolo.errors import InputError
    from yolo.model.cfg_parser import parse_cfg

    bad = tmp_path / "bad.cfg"
    bad.write_text(PADDED.format(pad="pad=0\npadding=2"))
    with pytest.raises(InputError) as e:
        parse_cfg(bad)
    assert str(e.value).startswith(f"{bad}:14: [maxpool] (layer 1) makes its map 31x31 for a 64x64 input, not "
                                   "input / stride 2 = 32x32, so [yolo] layer 5 would decode on another grid;")
    good = tmp_path / "good.cfg"
    good.write_text(PADDED.format(pad="pad=1"))
    model = calibrated_model(good, seed=3, bn_eps=1e-6, size=(64, 64))
    model.save_darknet_weights(tmp_path / "good.weights")
    x = torch.flip(photo_batch(96, 64, n=1), dims=[3]).contiguous()
    with torch.no_grad():
        raw = model(x)
        ours = _ours_in_opencv_order(model, raw)
    assert raw[0].shape[2:4] == (12, 8)  # input / 8
    net = cv2.dnn.readNetFromDarknet(str(good), str(tmp_path / "good.weights"))
    net.setInput(x.numpy())
    theirs = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    assert theirs.shape == ours.shape
    assert np.abs(ours[:, :2] - theirs[:, :2] * [64, 96]).max() / 96 < 1e-4  # box centres
    assert np.abs(ours[:, 4] - theirs[:, 4]).max() < 1e-4  # objectness


def test_a_grey_model_takes_rgb_images_made_grey_as_darknet_loads_them(tmp_path):
    """A ``[net] channels=1`` cfg parsed and ran on ``[B, 1, H, W]``, but detect, val and export feed RGB:
    "expected input [B, 1, H, W], got [1, 3, 128, 128]" (export: with tensor reprs). RGB is now made grey with
    stb_image's luma, as darknet's loader does for such a cfg ((77 R + 150 G + 29 B) / 256), and the network
    is OpenCV's on that grey image."""
    from yolo import Detector

    cfg = tmp_path / "grey.cfg"
    cfg.write_text("[net]\nwidth=64\nheight=64\nchannels=1\n\n"
                   "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n\n"
                   "[convolutional]\nsize=1\nstride=1\npad=1\nfilters=21\nactivation=linear\n\n"
                   "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=2\nnum=3\n")
    rgb = photo_batch(64, 96, n=1)  # [1, 3, H, W]
    luma = (rgb * torch.tensor([77.0, 150.0, 29.0]).view(1, 3, 1, 1) / 256).sum(1, keepdim=True)
    model = calibrated_model(cfg, seed=5, bn_eps=1e-6, size=(64, 64), calib=luma)
    model.save_darknet_weights(tmp_path / "grey.weights")
    with torch.no_grad():
        ours = _ours_in_opencv_order(model, model(rgb))
        torch.testing.assert_close(model.decode(model(rgb)), model.decode(model(luma)))
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(tmp_path / "grey.weights"))
    net.setInput(luma.numpy())
    theirs = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    assert np.abs(ours[:, 4] - theirs[:, 4]).max() < 1e-4  # objectness
    assert np.abs(ours[:, :2] - theirs[:, :2] * [96, 64]).max() / 96 < 1e-4  # box centres
    image = (rgb[0].permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8)  # BGR, as read
    assert len(Detector(model, img_size=(64, 96), conf=0.01)(image)[0]) > 0
    with pytest.raises(ValueError, match=r"expected input \[B, 1, H, W\] \(or RGB \[B, 3, H, W\], made grey\), "
                                         r"got \[1, 2, 64, 96\]$"):
        model(rgb[:, :2])
