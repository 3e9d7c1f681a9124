# Export result records to BigQuery. The filter keeps the service's stdout entries that
# carry the app tag: result records only (not the logging library's diagnostic entry, not
# gunicorn/TensorFlow noise, which goes to stderr anyway).
resource "google_logging_project_sink" "results" {
  project     = var.project_id
  name        = "${var.service_name}-results-to-bigquery"
  description = "bucketeye result records -> BigQuery ${var.dataset_id}.${local.sink_table_id}"
  destination = "bigquery.googleapis.com/projects/${var.project_id}/datasets/${google_bigquery_dataset.results.dataset_id}"
  filter      = local.results_filter

  # A dedicated writer identity, granted dataEditor on this dataset only (iam.tf).
  unique_writer_identity = true

  bigquery_options {
    use_partitioned_tables = true
  }

  # The table must exist (with its schema) before the first entry is exported.
  depends_on = [google_bigquery_table.stdout]
}

# Results counted by status, error code, trigger and retryability.
resource "google_logging_metric" "results" {
  project     = var.project_id
  name        = "${var.service_name}_results"
  description = "bucketeye classification results by status and error code."
  filter      = local.results_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.service_name} results"

    labels {
      key         = "status"
      value_type  = "STRING"
      description = "ok or error"
    }
    labels {
      key         = "error_code"
      value_type  = "STRING"
      description = "Stable error code (empty when ok)"
    }
    labels {
      key         = "retryable"
      value_type  = "STRING"
      description = "Whether the error was transient (empty when ok)"
    }
    labels {
      key         = "trigger"
      value_type  = "STRING"
      description = "storage, pubsub or http"
    }
  }

  label_extractors = {
    status     = "EXTRACT(jsonPayload.status)"
    error_code = "EXTRACT(jsonPayload.error.code)"
    retryable  = "EXTRACT(jsonPayload.error.retryable)"
    trigger    = "EXTRACT(jsonPayload.source.trigger)"
  }

  depends_on = [google_project_service.apis]
}

# End-to-end latency per image (jsonPayload.timings_ms.total), as a distribution.
resource "google_logging_metric" "latency" {
  project     = var.project_id
  name        = "${var.service_name}_latency"
  description = "bucketeye per-image total time in milliseconds (fetch + decode + queue + inference)."
  filter      = "${local.results_filter}jsonPayload.timings_ms.total:*"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "${var.service_name} latency"

    labels {
      key         = "status"
      value_type  = "STRING"
      description = "ok or error"
    }
    labels {
      key         = "trigger"
      value_type  = "STRING"
      description = "storage, pubsub or http"
    }
  }

  value_extractor = "EXTRACT(jsonPayload.timings_ms.total)"
  label_extractors = {
    status  = "EXTRACT(jsonPayload.status)"
    trigger = "EXTRACT(jsonPayload.source.trigger)"
  }

  # 1 ms to ~12 min (1.4^40 ms) in 40 buckets, each 40 % wider than the last.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 1.4
      scale              = 1
    }
  }

  depends_on = [google_project_service.apis]
}
