"""The device crop equals the CPU crop (OpenCV) bit for bit, so the GPU path keeps the golden equivalence."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from siamtrack import geometry as geo
from siamtrack.backends.geometry_torch import context_crop_torch, resize_linear_u8


@pytest.mark.parametrize("side", [60, 100, 126, 127, 128, 254, 255, 256, 300, 413, 829, 1001])
@pytest.mark.parametrize("out", [127, 255])
def test_resize_matches_opencv(side, out):
    img = np.random.default_rng(side * 7 + out).integers(0, 256, (side, side, 3), dtype=np.uint8)
    expected = cv2.resize(img, (out, out))
    got = resize_linear_u8(torch.from_numpy(img), out).numpy()
    np.testing.assert_array_equal(got, expected)


def test_crops_match_cpu_crop_inside_and_across_borders():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    avg = frame.mean(axis=(0, 1))
    ft = torch.from_numpy(frame)
    cases = [((160.0, 120.0), 80.3), ((5.2, 7.9), 150.0), ((318.5, 239.5), 413.7), ((-40.0, 100.0), 90.0),
             ((160.0, 120.0), 829.0), ((100.5, 60.5), 127.0), ((12.5, 200.5), 255.0)]
    for half_up in (False, True):
        for center, side in cases:
            for out in (127, 255):
                expected = geo.context_crop(frame, center, side, out, avg, half_up=half_up)
                got = context_crop_torch(ft, center, side, out, avg, half_up=half_up).numpy()
                np.testing.assert_array_equal(got, expected, err_msg=f"{center} {side} {out} {half_up}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_crop_on_cuda_equals_cpu():
    frame = np.random.default_rng(1).integers(0, 256, (480, 854, 3), dtype=np.uint8)
    avg = frame.mean(axis=(0, 1))
    expected = geo.context_crop(frame, (400.3, 200.7), 613.2, 255, avg)
    got = context_crop_torch(torch.from_numpy(frame).cuda(), (400.3, 200.7), 613.2, 255, avg).cpu().numpy()
    np.testing.assert_array_equal(got, expected)
