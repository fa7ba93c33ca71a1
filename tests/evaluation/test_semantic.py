"""ConfusionMatrix against FCN's reference `score.py` definitions and hand-computed values."""

import numpy as np
import pytest

from segzoo.evaluation.semantic import ConfusionMatrix, format_table


# --- FCN reference (shelhamer/fcn.berkeleyvision.org score.py + wkentaro's label_accuracy_score)
def fcn_fast_hist(a, b, n):
    k = (a >= 0) & (a < n)
    return np.bincount(n * a[k].astype(int) + b[k], minlength=n**2).reshape(n, n)


def fcn_label_accuracy_score(label_trues, label_preds, n_class):
    hist = np.zeros((n_class, n_class))
    for lt, lp in zip(label_trues, label_preds, strict=True):
        hist += fcn_fast_hist(lt.flatten(), lp.flatten(), n_class)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.diag(hist).sum() / hist.sum()
        acc_cls = np.nanmean(np.diag(hist) / hist.sum(axis=1))
        iu = np.diag(hist) / (hist.sum(axis=1) + hist.sum(axis=0) - np.diag(hist))
        mean_iu = np.nanmean(iu)
        freq = hist.sum(axis=1) / hist.sum()
        fwavacc = (freq[freq > 0] * iu[freq > 0]).sum()
    return acc, acc_cls, mean_iu, fwavacc, iu


def test_hand_computed_small_case():
    labels = np.array([0, 0, 1, 1, 2, 255])
    preds = np.array([0, 1, 1, 1, 0, 2])
    cm = ConfusionMatrix(3)
    cm.update(labels, preds)
    np.testing.assert_array_equal(cm.hist, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    m = cm.metrics()
    assert m["pixel_accuracy"] == pytest.approx(0.6)
    assert m["mean_accuracy"] == pytest.approx(0.5)
    np.testing.assert_allclose(m["per_class_iou"], [1 / 3, 2 / 3, 0.0])
    assert m["mean_iou"] == pytest.approx(1 / 3)
    assert m["fw_iou"] == pytest.approx(0.4 / 3 + 0.4 * 2 / 3)


def test_absent_class_is_nan_and_excluded_from_means():
    cm = ConfusionMatrix(4)
    cm.update(np.array([[0, 0], [1, 1]]), np.array([[0, 1], [1, 1]]))
    m = cm.metrics()
    assert np.isnan(m["per_class_iou"][2]) and np.isnan(m["per_class_iou"][3])
    assert m["mean_iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)


@pytest.mark.parametrize("num_classes", [2, 5, 21])
def test_matches_fcn_reference_on_random_batches(num_classes):
    rng = np.random.default_rng(num_classes)
    trues, preds = [], []
    cm = ConfusionMatrix(num_classes)
    for _ in range(4):
        h, w = rng.integers(5, 40, size=2)
        t = rng.integers(0, num_classes, size=(h, w))
        t[rng.random((h, w)) < 0.1] = 255
        p = np.where(rng.random((h, w)) < 0.6, np.where(t == 255, 0, t), rng.integers(0, num_classes, (h, w)))
        trues.append(t)
        preds.append(p)
        cm.update(t, p)
    acc, acc_cls, mean_iu, fwavacc, iu = fcn_label_accuracy_score(trues, preds, num_classes)
    m = cm.metrics()
    assert m["pixel_accuracy"] == pytest.approx(acc)
    assert m["mean_accuracy"] == pytest.approx(acc_cls)
    assert m["mean_iou"] == pytest.approx(mean_iu)
    assert m["fw_iou"] == pytest.approx(fwavacc)
    np.testing.assert_allclose(m["per_class_iou"], iu, equal_nan=True)


def test_ignore_label_pixels_change_nothing():
    labels = np.array([[0, 1], [1, 0]])
    preds = np.array([[0, 1], [0, 0]])
    a, b = ConfusionMatrix(2), ConfusionMatrix(2)
    a.update(labels, preds)
    b.update(np.pad(labels, 3, constant_values=255), np.pad(preds, 3, constant_values=1))
    np.testing.assert_array_equal(a.hist, b.hist)


def test_errors_name_the_problem():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="outside"):
        cm.update(np.array([7]), np.array([0]))


def test_merge_and_table():
    a, b = ConfusionMatrix(2), ConfusionMatrix(2)
    a.update(np.array([0, 1]), np.array([0, 1]))
    b.update(np.array([1]), np.array([0]))
    a.merge(b)
    np.testing.assert_array_equal(a.hist, [[1, 0], [1, 1]])
    table = format_table(a.metrics(), ["background", "square"])
    assert "square" in table and "mean IoU" in table
