"""Keypoint branch: heatmap targets, loss, decoding and the head, against numpy transcriptions of torchvision."""

import numpy as np
import pytest
import tensorflow as tf

from segzoo.models.mask_rcnn.keypoint_head import KeypointHead, KeypointPredictor
from segzoo.models.mask_rcnn.keypoint_ops import (
    cubic_resize_matrix,
    heatmaps_to_keypoints,
    keypoint_loss,
    keypoints_to_heatmap_targets,
)
from tests.layer_testing import check_layer

# --- numpy transcriptions of torchvision (roi_heads.py) and torch's resize kernels -------------


def np_keypoints_to_heatmap(keypoints, rois, heatmap_size):
    """torchvision.models.detection.roi_heads.keypoints_to_heatmap, line by line, float32."""
    keypoints = keypoints.astype(np.float32)
    rois = rois.astype(np.float32)
    offset_x, offset_y = rois[:, 0][:, None], rois[:, 1][:, None]
    scale_x = (np.float32(heatmap_size) / (rois[:, 2] - rois[:, 0]))[:, None]
    scale_y = (np.float32(heatmap_size) / (rois[:, 3] - rois[:, 1]))[:, None]
    x, y = keypoints[..., 0], keypoints[..., 1]
    x_boundary = x == rois[:, 2][:, None]
    y_boundary = y == rois[:, 3][:, None]
    x = np.floor((x - offset_x) * scale_x).astype(np.int64)
    y = np.floor((y - offset_y) * scale_y).astype(np.int64)
    x[x_boundary] = heatmap_size - 1
    y[y_boundary] = heatmap_size - 1
    valid_loc = (x >= 0) & (y >= 0) & (x < heatmap_size) & (y < heatmap_size)
    valid = valid_loc & (keypoints[..., 2] > 0)
    return (y * heatmap_size + x) * valid, valid


def _torch_cubic_coefficients(t, a=-0.75):
    def near(d):
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def np_torch_bicubic(image, out_h, out_w):
    """F.interpolate(mode="bicubic", align_corners=False, size=...) of one [H, W] map, gather form."""
    in_h, in_w = image.shape

    def axis(in_size, out_size):
        scale = np.float32(in_size) / np.float32(out_size)
        source = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
        start = np.floor(source)
        return start.astype(np.int64), _torch_cubic_coefficients((source - start).astype(np.float64))

    iy, wy = axis(in_h, out_h)
    ix, wx = axis(in_w, out_w)
    out = np.zeros((out_h, out_w))
    for j in range(4):
        rows = np.clip(iy - 1 + j, 0, in_h - 1)
        for i in range(4):
            cols = np.clip(ix - 1 + i, 0, in_w - 1)
            out += wy[j][:, None] * wx[i][None, :] * image[rows[:, None], cols[None, :]]
    return out


def np_heatmaps_to_keypoints(maps, rois):
    """torchvision's heatmaps_to_keypoints on NHWC maps [R, m, m, P] -> [R, P, 3] (x, y, score)."""
    out = np.zeros((maps.shape[0], maps.shape[3], 3))
    for r, roi in enumerate(rois.astype(np.float32)):
        width = max(roi[2] - roi[0], np.float32(1))
        height = max(roi[3] - roi[1], np.float32(1))
        map_w, map_h = int(np.ceil(width)), int(np.ceil(height))
        for k in range(maps.shape[3]):
            resized = np_torch_bicubic(maps[r, :, :, k].astype(np.float64), map_h, map_w)
            pos = int(np.argmax(resized))
            x_int, y_int = pos % map_w, pos // map_w
            out[r, k] = [(x_int + 0.5) * (width / map_w) + roi[0], (y_int + 0.5) * (height / map_h) + roi[1],
                         resized[y_int, x_int]]
    return out


def np_conv_transpose_torch(x, kernel, bias, stride, padding):
    """torch ConvTranspose2d on NHWC x with a Keras (kh, kw, out, in) kernel."""
    n, h, w, _ = x.shape
    k = kernel.shape[0]
    full = np.zeros((n, (h - 1) * stride + k, (w - 1) * stride + k, kernel.shape[2]))
    for i in range(h):
        for j in range(w):
            full[:, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
                "nc,xyoc->nxyo", x[:, i, j], kernel)
    return full[:, padding:full.shape[1] - padding, padding:full.shape[2] - padding] + bias


def np_bilinear_torch(x, factor):
    """F.interpolate(mode="bilinear", align_corners=False, scale_factor=factor) on NHWC."""

    def axis(size):
        source = np.maximum((np.arange(size * factor) + 0.5) / factor - 0.5, 0.0)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, size - 1)
        return low, high, source - low

    y0, y1, ly = axis(x.shape[1])
    x0, x1, lx = axis(x.shape[2])
    top = x[:, y0] * (1 - ly)[None, :, None, None] + x[:, y1] * ly[None, :, None, None]
    return top[:, :, x0] * (1 - lx)[None, None, :, None] + top[:, :, x1] * lx[None, None, :, None]


# --- targets --------------------------------------------------------------------------------------


def test_heatmap_targets_hand_cases():
    rois = np.array([[10, 20, 66, 76], [0, 0, 112, 28]], np.float32)  # 56 x 56 px; 112 x 28 px
    keypoints = np.array([
        [[10, 20, 2],        # top-left corner -> cell (0, 0)
         [66, 76, 2],        # bottom-right edge (x == x2, y == y2) -> cell (55, 55)
         [65.99, 20.5, 1],   # visibility 1 (labelled, occluded) counts -> cell (0, 55)
         [30.5, 40.2, 0],    # not labelled
         [9.99, 30, 2],      # left of the RoI
         [70, 30, 2],        # right of the RoI
         [66, 80, 2]],       # on the right edge but below the RoI
        [[50, 10.3, 2],      # scale 0.5 / 2: column 25, row floor(20.6) = 20
         [112, 27.99, 2],    # x on the edge -> 55; row floor(55.98) = 55
         [0, 28, 2],         # y on the edge -> 55, column 0
         [-0.01, 5, 2],      # just left
         [111.99, 28.01, 2],  # just below
         [1, 1, 0],          # invisible
         [56, 14, 2]],       # centre -> (28, 28)
    ], np.float32)
    targets, valid = keypoints_to_heatmap_targets(keypoints, rois, 56)
    expected_valid = [[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 1]]
    expected = [[0, 55 * 56 + 55, 55, 0, 0, 0, 0], [20 * 56 + 25, 55 * 56 + 55, 55 * 56, 0, 0, 0, 28 * 56 + 28]]
    np.testing.assert_array_equal(valid.numpy(), np.array(expected_valid, bool))
    np.testing.assert_array_equal(targets.numpy(), expected)
    assert targets.dtype == tf.int32 and valid.dtype == tf.bool
    reference, reference_valid = np_keypoints_to_heatmap(keypoints, rois, 56)
    np.testing.assert_array_equal(targets.numpy(), reference)
    np.testing.assert_array_equal(valid.numpy(), reference_valid)


def test_heatmap_targets_random_against_torchvision_transcription():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (64, 2))
    rois = np.concatenate([xy, xy + rng.uniform(1, 150, (64, 2))], 1).astype(np.float32)
    # Keypoints around and inside the RoIs, some exactly on the edges, some unlabelled.
    kx = rng.uniform(rois[:, 0:1] - 20, rois[:, 2:3] + 20, (64, 17))
    ky = rng.uniform(rois[:, 1:2] - 20, rois[:, 3:4] + 20, (64, 17))
    kx[:, 0], ky[:, 1] = rois[:, 2], rois[:, 3]
    vis = rng.integers(0, 3, (64, 17))
    keypoints = np.stack([kx, ky, vis], -1).astype(np.float32)
    targets, valid = keypoints_to_heatmap_targets(keypoints, rois, 56)
    reference, reference_valid = np_keypoints_to_heatmap(keypoints, rois, 56)
    np.testing.assert_array_equal(valid.numpy(), reference_valid)
    np.testing.assert_array_equal(targets.numpy(), reference)
    assert 0.2 < reference_valid.mean() < 0.9
    # Padded [B, R, ...] layout gives the same per-RoI answer.
    batched, batched_valid = keypoints_to_heatmap_targets(keypoints.reshape(4, 16, 17, 3), rois.reshape(4, 16, 4))
    np.testing.assert_array_equal(batched.numpy().reshape(64, 17), reference)
    np.testing.assert_array_equal(batched_valid.numpy().reshape(64, 17), reference_valid)


def test_heatmap_targets_degenerate_roi_never_crashes():
    rois = np.array([[5, 5, 5, 9]], np.float32)  # zero width
    keypoints = np.array([[[5, 6, 2], [6, 6, 2]]], np.float32)
    targets, valid = keypoints_to_heatmap_targets(keypoints, rois, 56)
    # x == x2 puts the first on the last column (as torchvision); the second is outside.
    np.testing.assert_array_equal(valid.numpy(), [[True, False]])
    np.testing.assert_array_equal(targets.numpy(), [[14 * 56 + 55, 0]])


# --- loss -----------------------------------------------------------------------------------------


def _np_keypoint_loss(logits, targets, valid):
    r, m, _, p = logits.shape
    flat = logits.transpose(0, 3, 1, 2).reshape(r, p, m * m).astype(np.float64)
    lse = np.log(np.exp(flat - flat.max(-1, keepdims=True)).sum(-1)) + flat.max(-1)
    picked = np.take_along_axis(flat, targets[..., None].astype(int), -1)[..., 0]
    return ((lse - picked) * valid).sum() / max(valid.sum(), 1)


def test_keypoint_loss_against_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (3, 8, 8, 4)).astype(np.float32)
    targets = rng.integers(0, 64, (3, 4)).astype(np.int32)
    valid = rng.random((3, 4)) > 0.4
    loss = keypoint_loss(logits, targets, valid)
    np.testing.assert_allclose(loss.numpy(), _np_keypoint_loss(logits, targets, valid), rtol=1e-5)
    # Same numbers with a padded [B, R, ...] layout.
    batched = keypoint_loss(logits.reshape(1, 3, 8, 8, 4), targets.reshape(1, 3, 4), valid.reshape(1, 3, 4))
    np.testing.assert_allclose(batched.numpy(), loss.numpy(), rtol=1e-6)


def test_keypoint_loss_hand_values():
    # Uniform logits: -log(1 / m^2) whatever the target.
    zeros = np.zeros((2, 56, 56, 17), np.float32)
    targets = np.arange(34, dtype=np.int32).reshape(2, 17) * 90
    loss = keypoint_loss(zeros, targets, np.ones((2, 17), bool))
    np.testing.assert_allclose(loss.numpy(), np.log(56 * 56), rtol=1e-6)
    # Only the marked keypoint counts: logit 5 at its target in a 2 x 2 map.
    logits = np.zeros((1, 2, 2, 2), np.float32)
    logits[0, 1, 0, 0] = 5.0  # cell index 1 * 2 + 0 = 2
    loss = keypoint_loss(logits, np.array([[2, 3]], np.int32), np.array([[True, False]]))
    np.testing.assert_allclose(loss.numpy(), np.log(np.exp(5.0) + 3) - 5.0, rtol=1e-6)


def test_keypoint_loss_no_valid_keypoint_is_zero_with_finite_gradient():
    logits = tf.Variable(np.random.default_rng(2).normal(size=(2, 56, 56, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = keypoint_loss(logits, np.zeros((2, 3), np.int32), np.zeros((2, 3), bool))
    gradient = tape.gradient(loss, logits)
    assert loss.numpy() == 0.0
    assert np.all(np.isfinite(gradient.numpy())) and not np.any(gradient.numpy())
    with pytest.raises(ValueError, match="square"):
        keypoint_loss(np.zeros((1, 4, 5, 2), np.float32), np.zeros((1, 2), np.int32), np.ones((1, 2), bool))


# --- decoding -------------------------------------------------------------------------------------


def test_cubic_resize_matrix_hand_values_and_identity():
    # 4 -> 2: sources 0.5 and 2.5 (t = 0.5): weights (-0.09375, 0.59375, 0.59375, -0.09375), border clamped.
    matrix = cubic_resize_matrix(4, 2).numpy()
    np.testing.assert_allclose(matrix @ np.array([0, 1, 0, 0]), [0.59375, -0.09375], atol=1e-7)
    np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(cubic_resize_matrix(56, 56).numpy(), np.eye(56), atol=1e-7)
    image = np.random.default_rng(3).normal(size=(7, 7))
    for size in (3, 7, 19):
        resized = cubic_resize_matrix(7, size).numpy() @ image @ cubic_resize_matrix(7, 5).numpy().T
        np.testing.assert_allclose(resized, np_torch_bicubic(image, size, 5), atol=1e-5)


def test_heatmaps_to_keypoints_against_torchvision_transcription():
    rng = np.random.default_rng(4)
    maps = rng.normal(size=(6, 56, 56, 3)).astype(np.float32)
    rois = np.array([[3.2, 4.7, 60.1, 90.3],     # upsampled, fractional sizes
                     [10, 10, 30, 25],           # downsampled (20 x 15 px)
                     [0, 0, 56, 56],             # identity resize
                     [100.5, 50.25, 100.9, 50.5],  # narrower than 1 px: clamped to 1
                     [7, 9, 7 + 168, 9 + 112],
                     [0, 0, 0, 0]], np.float32)  # an empty padding slot
    decoded = heatmaps_to_keypoints(maps, rois).numpy()
    assert decoded.shape == (6, 3, 3) and decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, np_heatmaps_to_keypoints(maps, rois), rtol=1e-5, atol=1e-4)


def test_one_hot_heatmap_decodes_to_cell_centre_and_round_trips():
    rng = np.random.default_rng(5)
    cells = rng.integers(0, 56, (4, 5, 2))  # (row, col) per RoI and keypoint
    rois = np.array([[5, 7, 5 + 168, 7 + 168], [0, 0, 56, 56], [11, 3, 11 + 56 * 5, 3 + 56 * 3],
                     [20, 30, 20 + 56, 30 + 168]], np.float32)  # odd factors: a unique maximum
    maps = np.full((4, 56, 56, 5), -4.0, np.float32)
    for r in range(4):
        for k in range(5):
            maps[r, cells[r, k, 0], cells[r, k, 1], k] = 10.0
    decoded = heatmaps_to_keypoints(maps, rois).numpy()
    cell_w = (rois[:, 2] - rois[:, 0]) / 56
    cell_h = (rois[:, 3] - rois[:, 1]) / 56
    np.testing.assert_allclose(decoded[..., 0], rois[:, 0:1] + (cells[..., 1] + 0.5) * cell_w[:, None], atol=1e-4)
    np.testing.assert_allclose(decoded[..., 1], rois[:, 1:2] + (cells[..., 0] + 0.5) * cell_h[:, None], atol=1e-4)
    np.testing.assert_allclose(decoded[..., 2], 10.0, atol=1e-4)  # the peak survives a cubic resize at its centre
    # Encoding the decoded keypoints gives back the cells.
    points = np.concatenate([decoded[..., :2], np.full((4, 5, 1), 2.0, np.float32)], -1)
    targets, valid = keypoints_to_heatmap_targets(points, rois, 56)
    assert valid.numpy().all()
    np.testing.assert_array_equal(targets.numpy(), cells[..., 0] * 56 + cells[..., 1])


def test_heatmaps_to_keypoints_in_graph_with_unknown_count_and_batch_layout():
    maps = np.random.default_rng(6).normal(size=(2, 3, 56, 56, 2)).astype(np.float32)
    rois = np.tile(np.array([[1, 2, 40, 70]], np.float32), (2, 3, 1)) + np.arange(6, dtype=np.float32).reshape(2, 3, 1)
    decode = tf.function(heatmaps_to_keypoints, input_signature=[
        tf.TensorSpec([None, None, 56, 56, 2], tf.float32), tf.TensorSpec([None, None, 4], tf.float32)])
    graph = decode(maps, rois).numpy()
    assert graph.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(graph.reshape(6, 2, 3), np_heatmaps_to_keypoints(maps.reshape(6, 56, 56, 2),
                                                                                  rois.reshape(6, 4)), atol=1e-4)


# --- head -----------------------------------------------------------------------------------------


def test_keypoint_head_and_predictor_check_layer_and_shapes():
    features = np.random.default_rng(7).normal(size=(2, 14, 14, 6)).astype(np.float32)
    check_layer(KeypointHead, {"layers": (8, 8, 4)}, features, expected_output_shape=(2, 14, 14, 4))
    check_layer(KeypointPredictor, {"num_keypoints": 5, "up_scale": 2}, features,
                expected_output_shape=(2, 56, 56, 5), atol=1e-5, rtol=1e-5)
    full = KeypointHead()
    full.build((None, 14, 14, 256))
    assert len(full.convs) == 8 and all(conv.filters == 512 for conv in full.convs)
    # torchvision: 256*512*9 + 512 + 7 * (512*512*9 + 512) parameters.
    assert full.count_params() == 256 * 512 * 9 + 512 + 7 * (512 * 512 * 9 + 512)
    with pytest.raises(ValueError, match="num_keypoints"):
        KeypointPredictor(0)


def test_keypoint_predictor_matches_torch_deconv_and_bilinear():
    rng = np.random.default_rng(8)
    features = rng.normal(size=(2, 14, 14, 3)).astype(np.float32)
    predictor = KeypointPredictor(num_keypoints=4)
    predictor.build(features.shape)
    kernel = rng.normal(0, 0.1, (4, 4, 4, 3)).astype(np.float32)
    bias = rng.normal(0, 0.1, 4).astype(np.float32)
    predictor.kps_score_lowres.set_weights([kernel, bias])
    # ConvTranspose2d(kernel 4, stride 2, padding 1) then interpolate(scale 2, bilinear, align_corners=False).
    expected = np_bilinear_torch(np_conv_transpose_torch(features, kernel, bias, 2, 1), 2)
    output = predictor(features).numpy()
    assert output.shape == (2, 56, 56, 4) and output.dtype == np.float32
    np.testing.assert_allclose(output, expected, atol=1e-4)


def test_no_rois_is_not_a_crash():
    targets, valid = keypoints_to_heatmap_targets(np.zeros((0, 17, 3), np.float32), np.zeros((0, 4), np.float32))
    assert targets.shape == (0, 17) and valid.shape == (0, 17)
    assert keypoint_loss(np.zeros((0, 56, 56, 17), np.float32), targets, valid).numpy() == 0.0
    empty = heatmaps_to_keypoints(np.zeros((2, 0, 56, 56, 17), np.float32), np.zeros((2, 0, 4), np.float32))
    assert empty.shape == (2, 0, 17, 3)


def test_keypoint_branch_wired_to_mask_rcnn_components_trains():
    """Pooler (14 x 14) -> keypoint head -> 56 x 56 heatmaps; targets of matched GT keypoints; one gradient step."""
    from segzoo.blocks import MultiLevelRoIPooler
    from segzoo.models.mask_rcnn.box_ops import gather_rows

    rng = np.random.default_rng(9)
    pyramid = {f"P{i + 2}": tf.constant(rng.normal(size=(2, 64 // 2 ** (i + 2), 64 // 2 ** (i + 2), 8)), tf.float32)
               for i in range(4)}
    gt_keypoints = np.concatenate([rng.uniform(0, 64, (2, 3, 4, 2)), rng.integers(0, 3, (2, 3, 4, 1))], -1)
    rois = tf.constant([[[0, 0, 64, 64], [10, 10, 30, 40]], [[5, 5, 50, 60], [0, 0, 1, 1]]], tf.float32)
    matched = tf.constant([[0, 2], [1, 0]], tf.int32)
    positive = tf.constant([[True, True], [True, False]])
    keypoints = gather_rows(tf.constant(gt_keypoints, tf.float32), matched)
    targets, valid = keypoints_to_heatmap_targets(keypoints, rois)
    valid = valid & positive[..., None]
    head, predictor = KeypointHead((8, 8)), KeypointPredictor(4)
    with tf.GradientTape() as tape:
        heatmaps = predictor(head(tf.reshape(MultiLevelRoIPooler(14, sampling_ratio=2)(pyramid, rois), [-1, 14, 14, 8])))
        heatmaps = tf.reshape(heatmaps, [2, 2, 56, 56, 4])
        loss = keypoint_loss(heatmaps, targets, valid)
    gradients = tape.gradient(loss, head.trainable_variables + predictor.trainable_variables)
    assert valid.numpy().sum() > 0 and np.isfinite(loss.numpy())
    np.testing.assert_allclose(loss.numpy(), _np_keypoint_loss(
        heatmaps.numpy().reshape(4, 56, 56, 4), targets.numpy().reshape(4, 4), valid.numpy().reshape(4, 4)),
        rtol=1e-5)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)
    assert heatmaps_to_keypoints(heatmaps, rois).shape == (2, 2, 4, 3)
