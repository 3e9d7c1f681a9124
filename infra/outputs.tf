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
  description = "Fully qualified BigQuery tables: the sink's table and the two views."
  value = {
    log_table   = "${local.bq_prefix}.${google_bigquery_table.stdout.table_id}"
    results     = "${local.bq_prefix}.${google_bigquery_table.results.table_id}"
    predictions = "${local.bq_prefix}.${google_bigquery_table.predictions.table_id}"
  }
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
