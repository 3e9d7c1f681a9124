"""Training data from what the service saw: `python main.py dataset export` (results + the
images in the bucket -> TFRecords, CSV, Vertex AI JSONL) and `python main.py dataset faces`
(a folder of photos -> a cleaned, split set of face crops)."""
