"""Model outputs -> top-k predictions or detections."""
from __future__ import annotations

import numpy as np

from shared.errors import BucketeyeError
from shared.models.labels import Labels
from shared.results import Detection, Prediction

DETECTION_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores")
OUTPUT_KINDS = ("auto", "logits", "probabilities")


def is_detection(output_names) -> bool:
    return all(name in output_names for name in DETECTION_OUTPUTS)


def looks_like_probabilities(scores: np.ndarray) -> bool:
    """Non-negative rows summing to one: already a distribution, no softmax needed."""
    if scores.size == 0 or scores.min() < 0 or scores.max() > 1.0 + 1e-4:
        return False
    return bool(np.allclose(scores.sum(axis=-1), 1.0, atol=1e-3))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(scores: np.ndarray, labels: Labels, k: int, output_kind: str = "auto") -> list[Prediction]:
    """Scores for one image (a vector) -> the k best, best first."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.isfinite(scores).all():  # NaN would also make the JSON record invalid
        raise BucketeyeError("model_error", "the model returned NaN or infinite scores", retryable=False)
    output_kind = (output_kind or "auto").lower()
    if output_kind == "logits" or (output_kind == "auto" and not looks_like_probabilities(scores)):
        scores = softmax(scores)
    k = max(1, min(k, scores.size))
    best = np.argsort(-scores, kind="stable")[:k]  # ties: the lower class id first, every time
    return [Prediction(label=labels.name(int(i)), label_id=int(i), score=float(scores[i])) for i in best]


def detections(outputs: dict[str, np.ndarray], labels: Labels, threshold: float) -> list[Detection]:
    """One image's Object Detection API outputs -> boxes above `threshold`, best first."""
    boxes = np.asarray(outputs["detection_boxes"]).reshape(-1, 4)
    classes = np.asarray(outputs["detection_classes"]).reshape(-1)
    scores = np.asarray(outputs["detection_scores"]).reshape(-1)
    count = int(np.asarray(outputs.get("num_detections", [len(scores)])).reshape(-1)[0])
    found = []
    for box, cls, score in zip(boxes[:count], classes[:count], scores[:count]):
        if score >= threshold:
            label_id = int(round(float(cls)))
            found.append(Detection(label=labels.name(label_id), label_id=label_id, score=float(score),
                                   box=tuple(float(np.clip(v, 0.0, 1.0)) for v in box)))
    found.sort(key=lambda d: -d.score)
    return found
