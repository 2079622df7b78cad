"""The tracker's context crop computed on a torch device, bit-identical to the CPU one.

On a GPU the frame is uploaded once and the crops never come back to the host. The
resize reproduces OpenCV's ``INTER_LINEAR`` for uint8 exactly: float32 source
coordinates, 11-bit fixed-point weights, a horizontal pass into int32, then the
vertical pass with OpenCV's rounding ``((b0*(v0>>4) >> 16) + (b1*(v1>>4) >> 16) + 2) >> 2``.
Columns clamp the sampling position at the borders; rows clamp the row index only.
``tests/test_geometry_torch.py`` checks equality with ``cv2.resize`` on many sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from siamtrack.geometry import crop_origin

COEF_BITS = 11
COEF_SCALE = 1 << COEF_BITS


def _linear_coeffs(src: int, dst: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and fixed-point weights (dst, 2) as OpenCV computes them."""
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    f = (f - i0.astype(np.float32)).astype(np.float32)
    if clamp:
        low = i0 < 0
        high = i0 >= src - 1
        f[low | high] = 0
        i0[low] = 0
        i0[high] = src - 1
    w0 = np.rint((np.float32(1) - f) * np.float32(COEF_SCALE)).astype(np.int32)
    w1 = np.rint(f * np.float32(COEF_SCALE)).astype(np.int32)
    return np.clip(i0, 0, src - 1), np.clip(i0 + 1, 0, src - 1), np.stack([w0, w1], axis=1)


def resize_linear_u8(patch: torch.Tensor, out_size: int) -> torch.Tensor:
    """``cv2.resize(patch, (out, out))`` for an (S, S, C) uint8 tensor, on its device."""
    dev = patch.device
    src = patch.shape[0]
    x0, x1, wx = (torch.from_numpy(a).to(dev) for a in _linear_coeffs(src, out_size, clamp=True))
    y0, y1, wy = (torch.from_numpy(a).to(dev) for a in _linear_coeffs(src, out_size, clamp=False))
    p = patch.to(torch.int32)
    rows = p[:, x0] * wx[None, :, 0:1] + p[:, x1] * wx[None, :, 1:2]  # (S, out, C)
    v0, v1 = rows[y0], rows[y1]
    b0, b1 = wy[:, 0].view(-1, 1, 1), wy[:, 1].view(-1, 1, 1)
    out = (((b0 * (v0 >> 4)) >> 16) + ((b1 * (v1 >> 4)) >> 16) + 2) >> 2
    return out.clamp_(0, 255).to(torch.uint8)


def context_crop_torch(frame: torch.Tensor, center_xy: Sequence[float], crop_side: float, out_size: int,
                       pad_color: np.ndarray | Sequence[float], half_up: bool = False, *,
                       truncate: bool = False) -> torch.Tensor:
    """Same result as :func:`siamtrack.geometry.context_crop` for an (H, W, 3) uint8 tensor."""
    side = int(round(crop_side))
    x0 = crop_origin(float(center_xy[0]), side, half_up, truncate=truncate)
    y0 = crop_origin(float(center_xy[1]), side, half_up, truncate=truncate)
    h, w = frame.shape[:2]
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ix0 == x0 and iy0 == y0 and ix1 == x0 + side and iy1 == y0 + side:
        patch = frame[y0:y0 + side, x0:x0 + side]
    else:
        fill = torch.as_tensor(np.asarray(pad_color, dtype=np.float64).astype(np.uint8), device=frame.device)
        patch = fill.expand(side, side, frame.shape[2]).clone()
        if ix1 > ix0 and iy1 > iy0:
            patch[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = frame[iy0:iy1, ix0:ix1]
    if side != out_size:
        patch = resize_linear_u8(patch, out_size)
    return patch
