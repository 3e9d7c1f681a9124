-- bucketeye `results` view: one row per result_id.
--
-- The same image can be logged more than once (Pub/Sub redelivers at least once, a
-- transient error is retried, and the Logging export does not de-duplicate). Rows of
-- one image and model share jsonPayload.result_id. Which row wins: an `ok` row, the
-- newest if there are several; with no `ok` row, the newest row. So a late redelivery
-- that ends in an error (stale_event, not_found after a delete) never hides a result.
-- A `skipped` record has a result_id of its own and never competes with these.
--
-- Template variable (Terraform templatefile()): source = the log sink's table, quoted
-- for the engine (BigQuery: `project.dataset.run_googleapis_com_stdout`). The SQL also
-- runs unchanged on DuckDB over a table of the same shape (the local stack).
-- JSON numbers arrive as FLOAT64 (Cloud Logging stores them as doubles): integer
-- fields are cast back here.
SELECT
  jsonPayload.result_id AS result_id,
  timestamp,
  jsonPayload.status AS status,
  severity,
  CAST(jsonPayload.schema_version AS INT64) AS schema_version,
  jsonPayload.source.trigger AS trigger,
  jsonPayload.source.uri AS uri,
  jsonPayload.source.bucket AS bucket,
  jsonPayload.source.object AS object,
  jsonPayload.source.generation AS generation,
  jsonPayload.source.event_id AS event_id,
  jsonPayload.source.content_type AS content_type,
  CAST(jsonPayload.source.size_bytes AS INT64) AS size_bytes,
  jsonPayload.source.key AS key,
  jsonPayload.source.content_md5 AS content_md5,
  jsonPayload.image.format AS image_format,
  CAST(jsonPayload.image.width AS INT64) AS image_width,
  CAST(jsonPayload.image.height AS INT64) AS image_height,
  jsonPayload.model.name AS model_name,
  jsonPayload.model.version AS model_version,
  jsonPayload.model.id AS model_id,
  jsonPayload.top_label AS top_label,
  jsonPayload.top_score AS top_score,
  jsonPayload.predictions AS predictions,
  jsonPayload.detections AS detections,
  jsonPayload.timings_ms.fetch AS fetch_ms,
  jsonPayload.timings_ms.decode AS decode_ms,
  jsonPayload.timings_ms.queue AS queue_ms,
  jsonPayload.timings_ms.inference AS inference_ms,
  jsonPayload.timings_ms.total AS total_ms,
  jsonPayload.error.code AS error_code,
  jsonPayload.error.message AS error_message,
  jsonPayload.error.retryable AS error_retryable,
  resource.labels.revision_name AS revision,
  trace
FROM ${source}
WHERE jsonPayload.app = 'bucketeye'
  AND jsonPayload.result_id IS NOT NULL
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY jsonPayload.result_id
  ORDER BY CASE WHEN jsonPayload.status = 'ok' THEN 0 ELSE 1 END,
    timestamp DESC, receiveTimestamp DESC
) = 1
