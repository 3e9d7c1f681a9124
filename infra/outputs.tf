locals {
  bq_prefix = "${var.project_id}.${google_bigquery_dataset.results.dataset_id}"
}

output "service_url" {
  description = "URL of the Cloud Run service (HTTP API at /, upload page at GET /). Callers need roles/run.invoker and an identity token."
  value       = google_cloud_run_v2_service.service.uri
}

output "service_name" {
  description = "Cloud Run service name."
  value       = google_cloud_run_v2_service.service.name
}

output "image" {
  description = "Container image the service runs."
  value       = local.image
}

output "image_repository" {
  description = "Artifact Registry path images are pushed to (cloudbuild.yaml's _REGION/_REPOSITORY)."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "uploads_bucket" {
  description = "Bucket whose new objects are classified."
  value       = google_storage_bucket.uploads.name
}

output "topics" {
  description = "Pub/Sub topics: requests (publish work here), uploads (bucket notifications; null with the Eventarc variant) and their dead-letter topics."
  value = {
    requests             = google_pubsub_topic.requests.name
    requests_dead_letter = google_pubsub_topic.requests_dead_letter.name
    uploads              = one(google_pubsub_topic.uploads[*].name)
    uploads_dead_letter  = one(google_pubsub_topic.uploads_dead_letter[*].name)
  }
}

output "dead_letter_subscriptions" {
  description = "Pull subscriptions holding dead-lettered messages, for inspection and replay."
  value       = local.dead_letter_subscriptions
}

output "service_accounts" {
  description = "Runtime identity of the service and the invoker identity of Pub/Sub pushes / Eventarc."
  value = {
    runtime = google_service_account.runtime.email
    invoker = google_service_account.invoker.email
  }
}

output "dataset" {
  description = "BigQuery dataset with the exported results and the views."
  value       = google_bigquery_dataset.results.dataset_id
}

output "tables" {
  description = "Fully qualified BigQuery tables: the sink's table and the views."
  value = {
    log_table   = "${local.bq_prefix}.${google_bigquery_table.stdout.table_id}"
    results     = "${local.bq_prefix}.${google_bigquery_table.results.table_id}"
    predictions = "${local.bq_prefix}.${google_bigquery_table.predictions.table_id}"
    duplicates  = "${local.bq_prefix}.${google_bigquery_table.duplicates.table_id}"
  }
}

output "backfill_env" {
  description = "Environment for `python main.py backfill gs://BUCKET[/PREFIX]` (export $(terraform output -raw backfill_env)): the requests topic it publishes work to and the dataset whose results view tells it what is already classified."
  value       = "BACKFILL_TOPIC=${google_pubsub_topic.requests.id} BACKFILL_RESULTS=${local.bq_prefix}"
}

output "example_queries" {
  description = "BigQuery examples over the de-duplicated views."
  value = {
    latest_results = <<-EOT
      SELECT timestamp, uri, status, top_label, top_score, error_code, total_ms
      FROM `${local.bq_prefix}.results`
      WHERE timestamp > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
      ORDER BY timestamp DESC
      LIMIT 100
    EOT

    label_counts = <<-EOT
      SELECT label, COUNT(*) AS images, ROUND(AVG(score), 3) AS mean_score
      FROM `${local.bq_prefix}.predictions`
      WHERE rank = 1
      GROUP BY label
      ORDER BY images DESC
      LIMIT 20
    EOT

    errors_by_code = <<-EOT
      SELECT error_code, error_retryable, COUNT(*) AS results
      FROM `${local.bq_prefix}.results`
      WHERE status = 'error'
      GROUP BY error_code, error_retryable
      ORDER BY results DESC
    EOT

    latency_percentiles = <<-EOT
      SELECT trigger,
             COUNT(*) AS images,
             APPROX_QUANTILES(total_ms, 100)[OFFSET(50)] AS p50_ms,
             APPROX_QUANTILES(total_ms, 100)[OFFSET(95)] AS p95_ms,
             APPROX_QUANTILES(inference_ms, 100)[OFFSET(50)] AS inference_p50_ms
      FROM `${local.bq_prefix}.results`
      WHERE status = 'ok'
      GROUP BY trigger
    EOT

    duplicate_deliveries = <<-EOT
      SELECT jsonPayload.result_id, COUNT(*) AS rows_logged
      FROM `${local.bq_prefix}.${google_bigquery_table.stdout.table_id}`
      WHERE timestamp > TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
      GROUP BY 1
      HAVING COUNT(*) > 1
      ORDER BY rows_logged DESC
    EOT
  }
}

# ---------------------------------------------------------------- classify from SQL

locals {
  # Quoted names for the SQL below (null when enable_remote_function = false).
  sql_classify       = local.use_remote_function ? "`${local.bq_prefix}.${google_bigquery_routine.remote["classify"].routine_id}`" : null
  sql_classify_top_k = local.use_remote_function ? "`${local.bq_prefix}.${google_bigquery_routine.remote["classify_top_k"].routine_id}`" : null
  sql_object_table   = local.use_remote_function ? "`${local.bq_prefix}.${google_bigquery_table.uploads_objects[0].table_id}`" : null
  sql_results        = "`${local.bq_prefix}.${google_bigquery_table.results.table_id}`"
}

output "remote_function" {
  description = "Classify from SQL (null when enable_remote_function = false): the remote functions and the object table (fully qualified), the connection, its service account and the endpoint BigQuery calls."
  value = local.use_remote_function ? {
    classify        = "${local.bq_prefix}.${google_bigquery_routine.remote["classify"].routine_id}"
    classify_top_k  = "${local.bq_prefix}.${google_bigquery_routine.remote["classify_top_k"].routine_id}"
    object_table    = "${local.bq_prefix}.${google_bigquery_table.uploads_objects[0].table_id}"
    connection      = google_bigquery_connection.sql[0].name
    service_account = google_bigquery_connection.sql[0].cloud_resource[0].service_account_id
    endpoint        = local.remote_function_endpoint
  } : null
}

output "remote_function_queries" {
  description = "Classify from SQL examples (null when enable_remote_function = false). Every row passed to classify() is one image through the GPU service: store the answers (my_dataset.upload_labels stands for a table of yours) rather than classifying again."
  value = local.use_remote_function ? {
    classify_table = <<-EOT
      CREATE OR REPLACE TABLE my_dataset.upload_labels AS
      SELECT uri, content_type, updated, ${local.sql_classify}(uri) AS labels
      FROM ${local.sql_object_table}
      WHERE content_type LIKE 'image/%'
    EOT

    top_labels = <<-EOT
      SELECT uri,
             JSON_VALUE(labels, '$.status') AS status,
             JSON_VALUE(labels, '$.top_label') AS top_label,
             CAST(JSON_VALUE(labels, '$.top_score') AS FLOAT64) AS top_score,
             JSON_VALUE(labels, '$.model_id') AS model_id,
             JSON_VALUE(labels, '$.error.code') AS error_code
      FROM my_dataset.upload_labels
    EOT

    unnest_labels = <<-EOT
      SELECT uri,
             rank + 1 AS rank,
             JSON_VALUE(label, '$.label') AS label,
             CAST(JSON_VALUE(label, '$.label_id') AS INT64) AS label_id,
             CAST(JSON_VALUE(label, '$.score') AS FLOAT64) AS score
      FROM my_dataset.upload_labels,
           UNNEST(JSON_QUERY_ARRAY(labels, '$.labels')) AS label WITH OFFSET AS rank
      WHERE JSON_VALUE(labels, '$.status') = 'ok'
    EOT

    classify_unclassified = <<-EOT
      -- Objects the service has no successful result for yet (results = the log sink's view).
      SELECT o.uri, ${local.sql_classify_top_k}(o.uri, 3) AS labels
      FROM ${local.sql_object_table} AS o
      LEFT JOIN (SELECT DISTINCT uri FROM ${local.sql_results} WHERE status = 'ok') AS done
        ON done.uri = o.uri
      WHERE done.uri IS NULL
        AND o.content_type LIKE 'image/%'
    EOT

    model_disagreements = templatefile("${path.module}/sql/model_disagreements.sql", {
      results = local.sql_results
    })
  } : null
}

output "build" {
  description = "Cloud Build's service account and source bucket (build.tf)."
  value = {
    service_account = google_service_account.build.email
    source_bucket   = google_storage_bucket.build_source.name
  }
}

output "build_submit_command" {
  description = "Builds and pushes the image as the build account; run it from the repository root with TAG set: eval \"$(terraform -chdir=infra output -raw build_submit_command)\"."
  value       = "gcloud builds submit --config cloudbuild.yaml --project ${var.project_id} --service-account projects/${var.project_id}/serviceAccounts/${google_service_account.build.email} --gcs-source-staging-dir gs://${google_storage_bucket.build_source.name}/source --substitutions _REGION=${var.region},_REPOSITORY=${google_artifact_registry_repository.images.repository_id},_IMAGE=${var.image_name},_TAG=$TAG ."
}
