"""Settings: every bad value is refused with one line (variable, value, what is allowed) and
never with SystemExit; which buckets a trigger's event and a caller's request may read."""
from __future__ import annotations

import pytest

from shared.config import SETTINGS, SettingError, Settings, non_defaults


@pytest.mark.parametrize("name, value, allowed", [
    ("TOP_K", "five", "an integer >= 1"),
    ("TOP_K", "0", "an integer >= 1"),
    ("MAX_IMAGE_PIXELS", "-1", "an integer >= 1"),
    ("DECODE_WORKERS", "1.5", "an integer >= 0"),
    ("SCORE_THRESHOLD", "1.5", "a number >= 0 and <= 1"),
    ("FETCH_TIMEOUT_S", "0", "a number of seconds > 0"),
    ("DEDUP_WINDOW_S", "inf", "a number >= 0"),
    ("BATCH_MAX_DELAY_MS", "nan", "a number >= 0"),
    ("RESIZE_MODE", "zoom", "one of stretch, crop, pad (or empty)"),
    ("COLOR_SPACE", "CMYK", "one of RGB, HSV, YIQ, YUV, GRAYSCALE (or empty)"),
    ("OUTPUT_KIND", "softmax", "one of auto, logits, probabilities (or empty)"),
    ("INPUT_RANGE", "1,0", "LOW,HIGH with LOW below HIGH"),
    ("WORKERS", "-1", "an integer >= 0"),
    ("ACCELERATOR", "tpu", "one of auto, gpu, cpu (or empty)"),
    ("BATCH_SIZES", "1,eight", "whole numbers of at least 1"),
])
def test_a_bad_value_is_one_clear_line(name, value, allowed):
    with pytest.raises(SettingError) as caught:
        Settings.from_env({name: value})
    line = str(caught.value)
    assert line.startswith(f"bucketeye: invalid setting {name}={value!r}: expected {allowed}"), line
    assert "\n" not in line and not isinstance(caught.value, SystemExit)


def test_defaults_and_good_values_pass():
    Settings.from_env({})
    Settings.from_env({"RESIZE_MODE": "Crop", "COLOR_SPACE": "rgb", "OUTPUT_KIND": "logits", "INPUT_RANGE": "-1,1",
                       "MAX_EVENT_AGE_S": "0", "SCORE_THRESHOLD": "1"})


def test_non_defaults_names_only_what_was_changed():
    env = {"TOP_K": "3", "BATCH_MAX_SIZE": SETTINGS["BATCH_MAX_SIZE"][0], "PATH": "/bin"}
    assert non_defaults(env) == {"TOP_K": "3"}


def test_callers_may_name_request_buckets_and_never_the_model_bucket():
    settings = Settings.from_env({"ALLOWED_BUCKETS": "uploads,models,archive", "REQUEST_BUCKETS": "uploads,models",
                                  "MODEL_URI": "gs://models/classifier/"})
    assert [settings.bucket_allowed(b) for b in ("uploads", "models", "archive", "other")] == [True, True, True, False]
    assert [settings.bucket_allowed(b, requested=True) for b in ("uploads", "models", "archive", "other")] == [
        True, False, False, False]


def test_request_buckets_default_to_the_allowed_buckets_less_the_model_bucket():
    settings = Settings.from_env({"ALLOWED_BUCKETS": "uploads,models", "MODEL_URI": "gs://models/m.tflite"})
    assert settings.bucket_allowed("uploads", requested=True)
    assert not settings.bucket_allowed("models", requested=True)
    anything = Settings.from_env({"ALLOWED_BUCKETS": "uploads", "REQUEST_BUCKETS": "*", "MODEL_URI": "gs://m/x"})
    assert anything.bucket_allowed("elsewhere", requested=True) and not anything.bucket_allowed("m", requested=True)
