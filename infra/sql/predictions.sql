-- bucketeye `predictions` view: the top-k predictions of each (de-duplicated) result,
-- one row per prediction. Error results have no predictions and so no rows.
--
-- rank 1 is the best class: records list predictions best first, so ranking by score
-- (ties: lower label_id first) gives the record's order, and the SQL stays portable.
--
-- Template variable (Terraform templatefile()): results = the results view, quoted for
-- the engine. Runs unchanged on BigQuery and DuckDB.
SELECT
  r.result_id,
  r.timestamp,
  r.uri,
  r.model_id,
  ROW_NUMBER() OVER (
    PARTITION BY r.result_id
    ORDER BY p.score DESC, p.label_id ASC
  ) AS rank,
  p.label,
  CAST(p.label_id AS INT64) AS label_id,
  p.score
FROM ${results} AS r
CROSS JOIN UNNEST(r.predictions) AS p
