"""Model outputs: softmax only when needed, top-k order and ties, labels, detections."""
from __future__ import annotations

import math

import numpy as np
import pytest
from _unit_support import LABEL_MAP

from shared.errors import BucketeyeError
from shared.models.labels import Labels, find_labels
from shared.postprocess import detections, is_detection, looks_like_probabilities, softmax, top_k

NAMES = Labels({0: "zero", 1: "one", 2: "two", 3: "three", 4: "four"})


def ids(predictions) -> list[int]:
    return [p.label_id for p in predictions]


# --- logits vs probabilities --------------------------------------------------------------

def test_probabilities_are_kept_as_they_are():
    probs = np.array([0.1, 0.6, 0.05, 0.25, 0.0])
    assert looks_like_probabilities(probs)
    top = top_k(probs, NAMES, 3)
    assert [(p.label, p.label_id) for p in top] == [("one", 1), ("three", 3), ("zero", 0)]
    assert [p.score for p in top] == pytest.approx([0.6, 0.25, 0.1])


@pytest.mark.parametrize("logits", [
    [2.0, 1.0, 0.0, -1.0, 0.5],      # negative values
    [5.0, 3.0, 1.0, 0.0, 0.0],       # > 1
    [0.2, 0.3, 0.1, 0.1, 0.1],       # in [0, 1] but not summing to one
])
def test_logits_get_a_softmax(logits):
    logits = np.array(logits)
    assert not looks_like_probabilities(logits)
    top = top_k(logits, NAMES, 5)
    expected = np.exp(logits) / np.exp(logits).sum()
    assert ids(top) == list(np.argsort(-expected, kind="stable"))
    assert [p.score for p in top] == pytest.approx(sorted(expected, reverse=True))
    assert sum(p.score for p in top) == pytest.approx(1.0)


def test_output_kind_overrides_the_guess():
    probs = np.array([0.7, 0.2, 0.1])
    forced = top_k(probs, NAMES, 3, output_kind="logits")
    assert [p.score for p in forced] == pytest.approx(list(softmax(probs)))
    raw = top_k(np.array([4.0, -1.0, 2.0]), NAMES, 3, output_kind="probabilities")
    assert [(p.label_id, p.score) for p in raw] == [(0, 4.0), (2, 2.0), (1, -1.0)]


def test_softmax_is_stable_for_huge_logits():
    out = softmax(np.array([1000.0, 999.0, -1000.0]))
    assert np.isfinite(out).all()
    assert out[0] == pytest.approx(1 / (1 + math.exp(-1)))


def test_non_finite_scores_are_a_model_error_not_a_nan_record():
    for bad in ([0.5, np.nan, 0.5], [np.inf, 0.0, 1.0]):
        with pytest.raises(BucketeyeError) as caught:
            top_k(np.array(bad), NAMES, 2)
        assert caught.value.code == "model_error"


# --- top-k order and ties -----------------------------------------------------------------

def test_k_is_clamped():
    probs = np.array([0.5, 0.3, 0.2])
    assert ids(top_k(probs, NAMES, 10)) == [0, 1, 2]
    assert ids(top_k(probs, NAMES, 0)) == [0]


def test_ties_are_broken_by_the_lower_class_id():
    assert ids(top_k(np.array([0.1, 0.3, 0.3, 0.3]), NAMES, 2)) == [1, 2]
    assert ids(top_k(np.full(5, 0.2), NAMES, 5)) == [0, 1, 2, 3, 4]
    many = np.array([0.0] * 10 + [0.01] * 10 + [0.8])
    many = many / many.sum()
    assert ids(top_k(many, Labels(), 4)) == [20, 10, 11, 12]


def test_ties_are_deterministic_on_a_large_vector():
    rng = np.random.default_rng(3)
    scores = rng.choice([0.1, 0.2, 0.3], size=1000)
    scores = scores / scores.sum()
    got = ids(top_k(scores, Labels(), 7))
    assert got == list(np.flatnonzero(scores == scores.max())[:7])


def test_scores_are_floats_and_ids_ints():
    top = top_k(np.array([0.25, 0.75], dtype=np.float32), NAMES, 2)
    assert all(type(p.score) is float and type(p.label_id) is int for p in top)


# --- labels -------------------------------------------------------------------------------

def test_labels_txt_in_index_order():
    labels = Labels.from_text("tench\ngoldfish\n great white shark \n\n\n")
    assert len(labels) == 3
    assert [labels.name(i) for i in range(4)] == ["tench", "goldfish", "great white shark", "class_3"]


def test_label_map_pbtxt_ids_from_one():
    labels = Labels.from_pbtxt(LABEL_MAP)
    assert labels.names == {1: "cat", 2: "dog", 3: "bird"}  # display_name wins, name is the fallback
    assert labels.name(0) == "class_0"


def test_label_map_odd_layouts():
    text = 'item{id:7 name:"seven"}\nitem {\n  display_name: "Eight"\n  id: 8\n}\nitem { name: "no id" }\n'
    assert Labels.from_pbtxt(text).names == {7: "seven", 8: "Eight"}


def test_find_labels_precedence(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    assert len(find_labels(model)) == 0
    (tmp_path / "map.pbtxt").write_text(LABEL_MAP)
    assert find_labels(model).name(1) == "cat"
    (tmp_path / "labels.txt").write_text("a\nb\n")
    assert find_labels(model).name(1) == "b"
    (tmp_path / "m.labels.txt").write_text("own0\nown1\n")
    assert find_labels(model).name(1) == "own1"  # <stem>.labels.txt beside the model first


def test_find_labels_in_a_model_directory(tmp_path):
    (tmp_path / "empty.pbtxt").write_text("# no items here\n")
    (tmp_path / "z_map.pbtxt").write_text(LABEL_MAP)
    assert find_labels(tmp_path).names == {1: "cat", 2: "dog", 3: "bird"}
    (tmp_path / "labels.txt").write_text("only\n")
    assert find_labels(tmp_path).names == {0: "only"}


# --- detections ---------------------------------------------------------------------------

def _outputs(count=3):
    return {
        "detection_boxes": np.array([[[0.1, 0.2, 0.5, 0.6], [-0.2, 0.0, 1.0, 1.3], [0.3, 0.3, 0.4, 0.4],
                                      [0, 0, 1, 1]]], np.float32),
        "detection_classes": np.array([[1.0, 3.0, 2.0, 1.0]], np.float32),
        "detection_scores": np.array([[0.4, 0.8, 0.3, 0.99]], np.float32),
        "num_detections": np.array([float(count)], np.float32),
    }


def test_detection_outputs_are_recognised():
    assert is_detection(["detection_boxes", "detection_classes", "detection_scores", "num_detections"])
    assert not is_detection(["detection_boxes", "logits"])


def test_detections_above_threshold_best_first_boxes_clipped():
    found = detections({k: v[0] for k, v in _outputs().items()},
                       Labels.from_pbtxt(LABEL_MAP), 0.35)
    assert [(d.label, d.label_id) for d in found] == [("bird", 3), ("cat", 1)]
    assert [d.score for d in found] == pytest.approx([0.8, 0.4])
    assert found[0].box == pytest.approx((0.0, 0.0, 1.0, 1.0))        # clipped to [0, 1]
    assert found[1].box == pytest.approx((0.1, 0.2, 0.5, 0.6))


def test_num_detections_limits_the_candidates():
    rows = {k: v[0] for k, v in _outputs(count=4).items()}
    assert detections(rows, Labels(), 0.95)[0].score == pytest.approx(0.99)
    rows = {k: v[0] for k, v in _outputs(count=3).items()}
    assert detections(rows, Labels(), 0.95) == []
    rows.pop("num_detections")
    assert len(detections(rows, Labels(), 0.0)) == 4
