"""The metrics every stage reports, counted with numpy, equal scikit-learn's (the
competition's macro F1 with zero_division=0) bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from compress.measure.metrics import classification_metrics

CLASSES = ["a", "b", "c", "d", "e", "f"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=60))
def test_the_counts_equal_scikit_learns(pairs):
    """Classes absent from the labels, never predicted, or both (zero_division=0)
    included: hypothesis draws label lists as short as one."""
    targets = np.array([t for t, _ in pairs], dtype=np.int64)
    predictions = np.array([p for _, p in pairs], dtype=np.int64)
    labels = list(range(len(CLASSES)))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predictions, labels=labels, zero_division=0)
    ours = classification_metrics(targets, predictions, CLASSES)
    assert ours["macro_f1"] == float(np.mean(f1))
    assert ours["confusion_matrix"] == confusion_matrix(targets, predictions,
                                                        labels=labels).tolist()
    for i, name in enumerate(CLASSES):
        assert ours["per_class"][name] == {"f1": float(f1[i]),
                                           "precision": float(precision[i]),
                                           "recall": float(recall[i]),
                                           "support": int(support[i])}
    assert ours["num_images"] == len(pairs)
    assert ours["accuracy"] == float(np.mean(targets == predictions))


def test_no_images_give_zeros_not_an_error():
    """scikit-learn refuses empty label lists; a split left empty reads as 0 throughout."""
    empty = np.array([], dtype=np.int64)
    metrics = classification_metrics(empty, empty, CLASSES)
    assert metrics["macro_f1"] == 0.0 and metrics["accuracy"] == 0.0
    assert metrics["num_images"] == 0 and metrics["confusion_matrix"] == [[0] * 6] * 6
