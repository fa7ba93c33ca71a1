"""Learning sanity check (not a pytest file): ms_rcnn / keypoint_rcnn on synthetic shapes, losses go down.

    PYTHONPATH=$PWD python tests/models/mask_rcnn/sanity_learning.py ms_rcnn 150
    PYTHONPATH=$PWD python tests/models/mask_rcnn/sanity_learning.py keypoint_rcnn 150

64 px images with 1-2 rectangles / ellipses, masks and 4 extreme-point keypoints;
R18-FPN, narrow heads, Adam 1e-3, batch 2; prints the losses every 10 steps and
the mean of the first / last 10 steps.
"""
import json
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import segzoo


def make(n, rng, k=4):
    images = rng.uniform(0, 60, (n, 64, 64, 3)).astype(np.float32)
    boxes = np.zeros((n, 2, 4), np.float32)
    classes = np.zeros((n, 2), np.int32)
    masks = np.zeros((n, 2, 64, 64), np.uint8)
    kps = np.zeros((n, 2, k, 3), np.float32)
    yy, xx = np.mgrid[:64, :64]
    for i in range(n):
        for j in range(rng.integers(1, 3)):
            w, h = rng.integers(14, 30, 2)
            x1, y1 = rng.integers(0, 64 - w), rng.integers(0, 64 - h)
            c = rng.integers(1, 3)  # 1 = rectangle, 2 = ellipse (diamond-ish mask)
            cx, cy = x1 + w / 2, y1 + h / 2
            if c == 1:
                m = (xx >= x1) & (xx < x1 + w) & (yy >= y1) & (yy < y1 + h)
            else:
                m = ((xx + 0.5 - cx) / (w / 2)) ** 2 + ((yy + 0.5 - cy) / (h / 2)) ** 2 <= 1
            images[i][m] = [200, 80, 40] if c == 1 else [40, 200, 90]
            masks[i, j] = m
            classes[i, j] = c
            boxes[i, j] = [x1, y1, x1 + w, y1 + h]
            # extreme points: top, left, right, bottom (x, y, v=2)
            kps[i, j] = [[cx, y1 + 0.5, 2], [x1 + 0.5, cy, 2], [x1 + w - 0.5, cy, 2], [cx, y1 + h - 0.5, 2]]
    return images, {"boxes": boxes, "classes": classes, "masks": masks, "keypoints": kps}

name, steps = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
images, targets = make(64, rng)
small = dict(num_classes=2, backbone="resnet18", min_size=64, max_size=64, fpn_channels=64,
             representation_size=256, mask_head_channels=64, rpn_pre_nms_top_n_train=300,
             rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=50,
             rpn_batch_size_per_image=64, box_batch_size_per_image=64, max_detections=10, seed=0)
if name == "ms_rcnn":
    model = segzoo.get_model("ms_rcnn", maskiou_head_channels=64, maskiou_representation_size=256, **small)
else:
    model = segzoo.get_model("keypoint_rcnn", num_keypoints=4, keypoint_head_channels=64, **small)
model.compile(optimizer=keras.optimizers.Adam(1e-3))
data = tf.data.Dataset.from_tensor_slices((images, targets)).shuffle(64, seed=0).repeat().batch(2)
log = []
class Log(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        log.append({k: float(v) for k, v in logs.items()})
        if len(log) % 10 == 0:
            print(len(log), round(time.time() - start, 1), {k: round(v, 3) for k, v in log[-1].items()}, flush=True)
start = time.time()
# Keras metrics are running means over the epoch: one step per "epoch" gives per-step values.
model.fit(data, epochs=steps, steps_per_epoch=1, verbose=0, callbacks=[Log()])
def mean(rows, key): return float(np.mean([r[key] for r in rows]))
first, last = log[:10], log[-10:]
print(json.dumps({"model": name, "steps": steps, "seconds": round(time.time() - start, 1),
                  "first10": {k: round(mean(first, k), 4) for k in first[0]},
                  "last10": {k: round(mean(last, k), 4) for k in last[0]}}, indent=1))
out = model(tf.constant(images[:4]))
print("num_detections on 4 train images:", out["num_detections"].numpy().tolist())
if name == "keypoint_rcnn":
    # mean keypoint distance (px) of the best detection to the nearest GT instance's keypoints
    d = []
    for i in range(4):
        if int(out["num_detections"][i]) == 0:
            continue
        pred = out["keypoints"].numpy()[i, 0, :, :2]
        gts = targets["keypoints"][i][targets["classes"][i] > 0][..., :2]
        d.append(min(np.linalg.norm(pred - g, axis=-1).mean() for g in gts))
    print("mean keypoint error of top detection (px):", np.round(d, 2).tolist())
else:
    print("scores:", np.round(out["scores"].numpy()[:, :3], 3).tolist())
    print("mask_scores:", np.round(out["mask_scores"].numpy()[:, :3], 3).tolist())
