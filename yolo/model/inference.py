"""A model made ready for inference, the same way for detection, validation and profiling."""

from __future__ import annotations

import torch

from yolo.model.darknet import Darknet
from yolo.model.native_conv import (
    use_native_activations,
    use_native_convs,
    use_native_pools,
)
from yolo.model.winograd import use_winograd


def prepare_for_inference(model: Darknet, device: torch.device, dtype: torch.dtype,
                          winograd: bool | None = None) -> tuple[Darknet, torch.memory_format, int]:
    """Eval mode, BN folded into the convs, on ``device`` in ``dtype``, channels-last on CPU (oneDNN's fast
    layout) and, when ``winograd`` (default: float32 on CPU), Winograd 3x3 convs and (where the native matrix
    product is built) the other convs with many input channels as implicit GEMMs in C. Changes ``model`` in
    place.

    Returns ``(model, memory_format the inputs should have, number of Winograd convs)``.
    """
    memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model = model.eval().fuse().to(device, dtype).to(memory_format=memory_format)
    if winograd is None:
        winograd = device.type == "cpu" and dtype == torch.float32
    if not winograd:
        return model, memory_format, 0
    count = use_winograd(model)
    use_native_convs(model)
    use_native_activations(model)
    use_native_pools(model)
    return model, memory_format, count
