-- Images on which two models disagree: the latest successful result of each model per
-- image, paired with every other model's, where the top labels differ. Useful after a
-- new model (MODEL_URI) was deployed, or after classifying old uploads again from SQL.
--
-- Template variable (Terraform templatefile()): results = the results view, quoted for
-- the engine. Runs unchanged on BigQuery and DuckDB.
WITH latest AS (
  SELECT uri, model_id, top_label, top_score, timestamp
  FROM ${results}
  WHERE status = 'ok'
    AND uri IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY uri, model_id ORDER BY timestamp DESC) = 1
)
SELECT
  a.uri,
  a.model_id AS model_a,
  a.top_label AS label_a,
  a.top_score AS score_a,
  b.model_id AS model_b,
  b.top_label AS label_b,
  b.top_score AS score_b
FROM latest AS a
JOIN latest AS b
  ON a.uri = b.uri
  AND a.model_id < b.model_id
WHERE a.top_label != b.top_label
ORDER BY a.uri, model_a, model_b
