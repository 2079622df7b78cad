"""Unit tests of the tracker geometry on hand-made cases (no golden data, no network)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from siamtrack import geometry as geo

PAD = (10.7, 200.2, 255.9)  # float pad colour; the canvas holds it truncated to uint8
PAD_U8 = np.array([10, 200, 255], dtype=np.uint8)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 40x50 (h x w) BGR frame whose pixels all differ from PAD_U8 in channel 0."""
    img = np.random.default_rng(3).integers(20, 256, (40, 50, 3), dtype=np.uint8)
    assert not np.any(np.all(img == PAD_U8, axis=2))
    return img


def padded_reference(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The window at (x0, y0) of the frame surrounded by a wide pad-colour margin (np.pad, per channel)."""
    m = 100
    canvas = np.stack([np.pad(image[..., c], m, constant_values=PAD_U8[c]) for c in range(3)], axis=2)
    return canvas[y0 + m : y0 + m + side, x0 + m : x0 + m + side]


# context_crop ------------------------------------------------------------------------------


def test_crop_inside_equals_slicing(image):
    # side 11: origin = round(c - 6); centre (25, 20) -> x0 19, y0 14
    crop = geo.context_crop(image, (25.0, 20.0), 11, 11, PAD)
    assert crop.dtype == np.uint8 and crop.shape == (11, 11, 3)
    np.testing.assert_array_equal(crop, image[14:25, 19:30])


def test_crop_side_is_rounded_before_cutting(image):
    # 10.6 -> side 11, cut without resampling
    np.testing.assert_array_equal(geo.context_crop(image, (25.0, 20.0), 10.6, 11, PAD), image[14:25, 19:30])


@pytest.mark.parametrize(
    "center,x0,y0",
    [
        ((3.0, 20.0), -3, 14),  # left
        ((46.0, 20.0), 40, 14),  # right (w 50)
        ((25.0, 2.0), 19, -4),  # top
        ((25.0, 38.0), 19, 32),  # bottom (h 40)
        ((1.0, 39.0), -5, 33),  # bottom-left corner
        ((-30.0, 70.0), -36, 64),  # entirely outside
    ],
)
def test_crop_over_border_is_padded(image, center, x0, y0):
    side = 11
    crop = geo.context_crop(image, center, side, side, PAD)
    np.testing.assert_array_equal(crop, padded_reference(image, x0, y0, side))
    # the pad really is the truncated colour, and the in-frame part is the frame
    cols = np.arange(x0, x0 + side)
    rows = np.arange(y0, y0 + side)
    outside = ~((rows[:, None] >= 0) & (rows[:, None] < 40) & (cols[None] >= 0) & (cols[None] < 50))
    assert outside.any()
    np.testing.assert_array_equal(crop[outside], np.broadcast_to(PAD_U8, (int(outside.sum()), 3)))
    inside = ~outside
    if inside.any():
        r, c = np.nonzero(inside)
        np.testing.assert_array_equal(crop[r, c], image[rows[r], cols[c]])


def test_crop_single_channel_with_scalar_pad():
    mask = np.ones((20, 20), dtype=np.uint8)
    crop = geo.context_crop(mask, (2.0, 10.0), 9, 9, 0)
    # origin round(2 - 5) = -3: three padded columns
    assert crop.shape == (9, 9)
    assert np.all(crop[:, :3] == 0) and np.all(crop[:, 3:] == 1)


def test_crop_is_resized_only_when_side_differs(image):
    same = geo.context_crop(image, (25.0, 20.0), 31, 31, PAD)
    np.testing.assert_array_equal(same, padded_reference(image, 9, 4, 31))
    bigger = geo.context_crop(image, (25.0, 20.0), 31, 62, PAD)
    np.testing.assert_array_equal(bigger, cv2.resize(same, (62, 62)))
    assert bigger.shape == (62, 62, 3)


def test_crop_origin_rounds_half_to_even():
    # side 10: origin = round(c - 5.5)
    assert geo.crop_origin(7.0, 10) == 2  # 1.5 -> 2
    assert geo.crop_origin(8.0, 10) == 2  # 2.5 -> 2 (half to even)
    assert geo.crop_origin(8.0, 10, half_up=True) == 3  # PySOT: floor(2.5 + 0.5)
    assert geo.crop_origin(7.0, 10, half_up=True) == 2
    assert geo.crop_origin(8.1, 10) == 3


def test_crop_uses_half_to_even_origin(image):
    np.testing.assert_array_equal(geo.context_crop(image, (8.0, 8.0), 10, 10, PAD), image[2:12, 2:12])
    np.testing.assert_array_equal(geo.context_crop(image, (8.0, 8.0), 10, 10, PAD, half_up=True), image[3:13, 3:13])


def test_crop_rejects_empty_side(image):
    with pytest.raises(ValueError, match="crop side"):
        geo.context_crop(image, (10.0, 10.0), 0.4, 127, PAD)


# crop sizes ---------------------------------------------------------------------------------


def test_context_and_exemplar_side():
    # p = 0.5 * (30 + 30) = 30 -> sqrt(60 * 60)
    assert geo.context_size((30, 30)) == 60.0
    assert geo.exemplar_side((30, 30)) == 60
    # (60, 20): p = 40 -> sqrt(100 * 60)
    assert geo.context_size((60, 20)) == pytest.approx(math.sqrt(6000))
    assert geo.exemplar_side((60, 20)) == 77
    assert geo.exemplar_side((4, 9), context=0.0) == 6
    # exact halves round to even: 60.5 -> 60, 61.5 -> 62
    assert geo.exemplar_side((30.25, 30.25)) == 60
    assert geo.exemplar_side((30.75, 30.75)) == 62


def test_search_side_maps_exemplar_to_instance():
    # s_x = s_z * 255 / 127, unrounded
    assert geo.search_side((30, 30)) == pytest.approx(60.0 * 255 / 127)
    assert geo.search_side((60, 20)) == pytest.approx(math.sqrt(6000) * 255 / 127)


def test_crop_box_uses_rounded_side():
    assert geo.crop_box((160.0, 120.0), 254.6) == (32.5, -7.5, 255, 255)


# anchors and window --------------------------------------------------------------------------


def test_anchor_count_sizes_and_layout():
    anchors = geo.generate_anchors()
    assert anchors.shape == (3125, 4) and anchors.dtype == np.float32
    grid = anchors.reshape(5, 25, 25, 4)
    sizes = [(104, 32), (88, 40), (64, 64), (40, 80), (32, 96)]
    offsets = np.arange(-96, 97, 8)
    assert len(offsets) == 25
    for a, (w, h) in enumerate(sizes):
        assert np.all(grid[a, :, :, 2] == w) and np.all(grid[a, :, :, 3] == h)
        np.testing.assert_array_equal(grid[a, :, :, 0], np.broadcast_to(offsets[None, :], (25, 25)))  # col -> x
        np.testing.assert_array_equal(grid[a, :, :, 1], np.broadcast_to(offsets[:, None], (25, 25)))  # row -> y
    # flat index = anchor * 625 + row * 25 + col
    a, row, col = 3, 2, 17
    np.testing.assert_array_equal(anchors[a * 625 + row * 25 + col], [8 * (col - 12), 8 * (row - 12), 40, 80])


def test_base_anchor_sizes_are_truncated():
    np.testing.assert_array_equal(geo.base_anchors()[:, 2:], [[104, 32], [88, 40], [64, 64], [40, 80], [32, 96]])
    np.testing.assert_array_equal(geo.base_anchors()[:, :2], np.zeros((5, 2)))


def test_cosine_window_peak_and_border():
    win = geo.cosine_window()
    assert win.shape == (3125,) and win.dtype == np.float64
    grid = win.reshape(5, 25, 25)
    for a in range(5):
        np.testing.assert_array_equal(grid[a], grid[0])
        assert np.unravel_index(np.argmax(grid[a]), (25, 25)) == (12, 12)
    assert grid[0, 12, 12] == pytest.approx(1.0)
    for border in (grid[:, 0, :], grid[:, -1, :], grid[:, :, 0], grid[:, :, -1]):
        np.testing.assert_allclose(border, 0.0, atol=1e-15)
    assert np.all(grid[:, 1:-1, 1:-1] > 0)


# decoding and penalties ------------------------------------------------------------------------


def test_zero_deltas_decode_to_the_anchors():
    anchors = geo.generate_anchors()
    boxes = geo.decode_boxes(np.zeros((4, 3125), dtype=np.float32), anchors)
    assert boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, anchors.T)


def test_deltas_scale_with_the_anchor():
    anchors = np.array([[8.0, -16.0, 64.0, 32.0]], dtype=np.float32)
    delta = np.array([[0.5], [-0.25], [math.log(2)], [0.0]], dtype=np.float32)
    np.testing.assert_allclose(geo.decode_boxes(delta, anchors)[:, 0], [40.0, -24.0, 128.0, 32.0], rtol=1e-6)


def test_size_penalty():
    target = np.array([64.0, 64.0])
    boxes = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [64, 128, 32, 128], [64, 128, 128, 64]], dtype=np.float32)
    pen = geo.size_penalty(boxes, target, penalty_k=0.04)
    assert pen[0] == 1.0  # unchanged box
    assert pen[1] == pytest.approx(math.exp(-0.04))  # 2x scale: s_c = 2, r_c = 1
    assert np.all(pen[1:] < 1.0)
    assert pen[2] < pen[3]  # 32x128 (ratio change 4x) costs more than 128x64 (2x)
    # the penalty grows with penalty_k
    assert geo.size_penalty(boxes, target, penalty_k=0.1)[1] < pen[1]


def test_size_penalty_target_ratio_override():
    boxes = np.array([[0], [0], [64], [32]], dtype=np.float32)
    assert geo.size_penalty(boxes, np.array([64.0, 64.0]), 0.04, target_ratio=2.0)[0] > \
        geo.size_penalty(boxes, np.array([64.0, 64.0]), 0.04)[0]


# mask warp-back ------------------------------------------------------------------------------


def test_mask_window_of_cells():
    box = (32.5, -7.5, 255, 255)  # crop_box((160, 120), 255): 1 frame px per crop px
    assert geo.mask_window(box, 12, 12) == (96.5, 56.5, 127.0, 127.0)
    assert geo.mask_window(box, 0, 24) == (32.5 + 160, -7.5 - 32, 127.0, 127.0)
    # twice the search side: everything scales by 2 around the crop origin
    assert geo.mask_window((45.0, -55.0, 510, 510), 5, 17) == (253.0, -39.0, 254.0, 254.0)


@pytest.mark.parametrize("center,side,row,col,frame_wh", [
    ((160.0, 120.0), 255, 12, 12, (320, 240)),
    ((300.0, 200.0), 510, 5, 17, (640, 480)),  # window 254 px, sticking out of the top
])
@pytest.mark.parametrize("border", [-1.0, 0.0])
def test_ones_mask_warps_to_its_window(center, side, row, col, frame_wh, border):
    box = geo.crop_box(center, side)
    x0, y0, wside, _ = geo.mask_window(box, row, col)
    prob = geo.warp_mask_to_frame(np.ones((127, 127), np.float32), (x0, y0, wside, wside), frame_wh, border)
    w, h = frame_wh
    assert prob.shape == (h, w) and prob.dtype == np.float32
    # official mapping: mask pixel i lands at (x0 + i * side / 127) * (W - 1) / W
    step = wside / 127
    left, right = x0 * (w - 1) / w, (x0 + 126 * step) * (w - 1) / w
    top, bottom = y0 * (h - 1) / h, (y0 + 126 * step) * (h - 1) / h
    ys, xs = np.nonzero(prob > 0.5)
    assert abs(xs.min() - left) <= 1 and abs(xs.max() - right) <= 1
    assert abs(ys.min() - max(top, 0)) <= 1 and abs(ys.max() - bottom) <= 1
    inner = prob[math.ceil(max(top, 0)) + 1 : int(bottom) - 1, math.ceil(left) + 1 : int(right) - 1]
    assert inner.size and np.all(inner == 1.0)
    # beyond one mask pixel from the window: exactly the border value
    assert prob[-1, 0] == border and prob[-1, -1] == border
    assert np.all(prob[:, : math.floor(left - step)] == border)
    assert np.all(prob[:, math.ceil(right + step) + 1 :] == border)
    assert np.all(prob[math.ceil(bottom + step) + 1 :, :] == border)


def test_warp_places_mask_content():
    # a single bright mask pixel at (row 30, col 100) of a 255-px window anchored at (10, 20)
    mask = np.zeros((127, 127), np.float32)
    mask[30, 100] = 1.0
    prob = geo.warp_mask_to_frame(mask, (10.0, 20.0, 255.0, 255.0), (400, 300), border=0.0)
    y, x = np.unravel_index(np.argmax(prob), prob.shape)
    assert abs(x - (10 + 100 * 255 / 127) * 399 / 400) <= 1
    assert abs(y - (20 + 30 * 255 / 127) * 299 / 300) <= 1



@pytest.mark.parametrize("border", [-1.0, 0.0])
def test_the_warp_of_a_region_is_the_frame_warp_there_and_border_elsewhere(border):
    """Windows of every size, inside the frame, across its edges and beyond it: the region holds
    exactly the whole frame's warp, and every pixel outside the region the border value."""
    rng = np.random.default_rng(3)
    for _ in range(60):
        mask = cv2.GaussianBlur(rng.random((127, 127)).astype(np.float32), (0, 0), 3)
        wh = (int(rng.integers(50, 900)), int(rng.integers(50, 600)))
        side = float(rng.uniform(10, 1500))
        window = (float(rng.uniform(-1.2 * side, wh[0] + 50)), float(rng.uniform(-1.2 * side, wh[1] + 50)), side, side)
        full = geo.warp_mask_to_frame(mask, window, wh, border)
        x0, y0, x1, y1 = geo.mask_region(127, window, wh)
        assert 0 <= x0 <= x1 <= wh[0] and 0 <= y0 <= y1 <= wh[1]
        part = geo.warp_mask_to_frame(mask, window, wh, border, region=(x0, y0, x1, y1))
        assert part.shape == (y1 - y0, x1 - x0)
        np.testing.assert_array_equal(part, full[y0:y1, x0:x1])
        outside = np.ones(full.shape, bool)
        outside[y0:y1, x0:x1] = False
        assert np.all(full[outside] == border)


def test_mask_region_of_a_window_inside_the_frame_is_the_window_and_a_margin():
    x0, y0, x1, y1 = geo.mask_region(127, (100.0, 50.0, 254.0, 254.0), (854, 480))
    # mask pixel u lands at (100 + 2u) * 853/854 (official mapping): -1 < u < 127, then 2-3 px of margin
    assert (x0, y0) == (95, 45) and (x1, y1) == (357, 307)
    assert geo.mask_region(127, (900.0, 10.0, 100.0, 100.0), (854, 480))[2:] == (854, 113)
    x0, _, x1, _ = geo.mask_region(127, (-500.0, 10.0, 100.0, 100.0), (854, 480))
    assert x0 == x1 == 0  # the window misses the frame: nothing to warp

# rotated box -----------------------------------------------------------------------------------


def rect_mask(shape, cx, cy, w, h, angle_deg) -> np.ndarray:
    """Pixels whose centre lies in the rotated rectangle, as uint8 0/1."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    t = math.radians(angle_deg)
    dx, dy = xx - cx, yy - cy
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    return ((np.abs(u) <= w / 2) & (np.abs(v) <= h / 2)).astype(np.uint8)


def canonical(w: float, h: float, angle: float) -> tuple[float, float, float]:
    """Long side first, angle of the long side in [0, 180)."""
    if w < h:
        w, h, angle = h, w, angle + 90
    return w, h, angle % 180


@pytest.mark.parametrize("cx,cy,w,h,angle", [
    (160, 120, 100, 40, 30),
    (150.5, 110.25, 60, 90, -20),
    (170, 125, 120, 30, 75),
    (160, 120, 80, 50, 0),
])
def test_rotated_box_recovered_from_mask(cx, cy, w, h, angle):
    rb, source = geo.rotated_box_from_mask(rect_mask((240, 320), cx, cy, w, h, angle), (5.0, 5.0), (4.0, 4.0))
    assert source == "mask"
    assert abs(rb.cx - cx) <= 1 and abs(rb.cy - cy) <= 1
    got, want = canonical(rb.w, rb.h, rb.angle), canonical(w, h, angle)
    assert abs(got[0] - want[0]) <= 1 and abs(got[1] - want[1]) <= 1
    assert abs((got[2] - want[2] + 90) % 180 - 90) <= 1
    expected = cv2.boxPoints(((cx, cy), (w, h), angle))
    assert rb.points.shape == (4, 2)
    assert all(np.min(np.linalg.norm(rb.points - p, axis=1)) <= 1.5 for p in expected)


@pytest.mark.parametrize("blob", [0, 8, 11])  # contour areas 0 (empty), 49, 100: none exceeds 100
def test_small_or_empty_mask_falls_back_to_the_box(blob):
    mask = np.zeros((60, 80), np.uint8)
    mask[30 : 30 + blob, 40 : 40 + blob] = 1
    rb, source = geo.rotated_box_from_mask(mask, (20.0, 15.0), (8.0, 6.0))
    assert source == "box"
    np.testing.assert_array_equal(rb.points, [[16, 12], [24, 12], [24, 18], [16, 18]])
    assert (rb.cx, rb.cy, rb.w, rb.h, rb.angle) == (20.0, 15.0, 8.0, 6.0, 0.0)


def test_contour_just_over_the_area_limit_is_used():
    mask = np.zeros((60, 80), np.uint8)
    mask[30:42, 40:52] = 1  # 12x12 pixels: contour area 121
    rb, source = geo.rotated_box_from_mask(mask, (20.0, 15.0), (8.0, 6.0))
    assert source == "mask"
    assert (rb.cx, rb.cy) == pytest.approx((45.5, 35.5))


def test_largest_contour_wins():
    mask = np.zeros((100, 100), np.uint8)
    mask[10:30, 10:30] = 1
    mask[50:90, 40:60] = 1
    rb, _ = geo.rotated_box_from_mask(mask, (0.0, 0.0), (1.0, 1.0))
    assert (rb.cx, rb.cy) == pytest.approx((49.5, 69.5))


# state clipping --------------------------------------------------------------------------------


@pytest.mark.parametrize("center,size,want_center,want_size", [
    ((100.0, 80.0), (50.0, 40.0), (100.0, 80.0), (50.0, 40.0)),  # inside: unchanged
    ((-5.0, 300.0), (5.0, 500.0), (0.0, 240.0), (10.0, 240.0)),
    ((400.0, 2.0), (330.0, 3.0), (320.0, 2.0), (320.0, 10.0)),
    ((320.0, 240.0), (10.0, 10.0), (320.0, 240.0), (10.0, 10.0)),  # limits are inclusive
])
def test_clip_state(center, size, want_center, want_size):
    c, s = geo.clip_state(np.array(center), np.array(size), (320, 240))
    assert c.dtype == np.float64 and s.dtype == np.float64
    np.testing.assert_array_equal(c, want_center)
    np.testing.assert_array_equal(s, want_size)


def test_box_conversions_round_trip():
    center, size = geo.xywh_to_center((10, 20, 30, 41))
    np.testing.assert_array_equal(center, [25.0, 40.5])
    np.testing.assert_array_equal(size, [30.0, 41.0])
    assert geo.center_to_xywh(center, size) == (10.0, 20.0, 30.0, 41.0)
