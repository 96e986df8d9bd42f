"""Classification metrics agree with the argmax predictions the reports are made of."""

import numpy as np

from mmcl.engine.metrics import topk_accuracy


def test_top1_breaks_ties_like_argmax():
    # every row ties its two highest scores; argmax picks the lower index, and so must top-1
    scores = np.array([[0.5, 0.5, 0.1], [0.2, 0.7, 0.7], [0.3, 0.3, 0.3]], dtype=np.float32)
    labels = np.array([0, 2, 0])
    assert topk_accuracy(scores, labels, k=1) == np.mean(scores.argmax(axis=1) == labels) == 2 / 3


def test_topk_counts_a_label_within_the_k_highest():
    scores = np.array([[0.1, 0.9, 0.5, 0.2], [0.4, 0.3, 0.2, 0.1], [0.6, 0.1, 0.6, 0.6]])
    labels = np.array([2, 3, 3])  # ranks: 2nd, 4th, 3rd (tied with classes 0 and 2, ranked after them)
    assert topk_accuracy(scores, labels, k=1) == 0.0
    assert topk_accuracy(scores, labels, k=2) == 1 / 3
    assert topk_accuracy(scores, labels, k=3) == 2 / 3
    assert topk_accuracy(scores, labels, k=4) == 1.0
