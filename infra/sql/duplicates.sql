-- bucketeye `duplicates` view: images stored more than once. Results with the same
-- content hash (source.content_md5: the object's MD5 from its metadata, or computed for
-- inline data) under more than one gs:// URI, one row per hash, biggest waste first.
-- A URI classified by several models, or redelivered, still counts once.
--
-- Template variable (Terraform templatefile()): results = the results view, quoted for
-- the engine. Runs unchanged on BigQuery and DuckDB.
SELECT
  content_md5,
  COUNT(DISTINCT uri) AS copies,
  MAX(size_bytes) AS size_bytes,
  (COUNT(DISTINCT uri) - 1) * MAX(size_bytes) AS wasted_bytes,
  MIN(timestamp) AS first_seen,
  MAX(timestamp) AS last_seen,
  ARRAY_AGG(DISTINCT uri ORDER BY uri) AS uris
FROM ${results}
WHERE content_md5 IS NOT NULL
  AND uri IS NOT NULL
  AND status != 'skipped'  -- a delete event or a non-image is no stored image
GROUP BY content_md5
HAVING COUNT(DISTINCT uri) > 1
ORDER BY wasted_bytes DESC, copies DESC, content_md5
