resource "google_bigquery_dataset" "results" {
  # checkov:skip=CKV_GCP_81: Google-managed encryption is adequate for classification results; CMEK would need a KMS key usable by BigQuery and by the log sink's writer identity.
  project     = var.project_id
  dataset_id  = var.dataset_id
  location    = local.bigquery_location
  description = "bucketeye results: the Cloud Run service's result log entries (log sink) and views over them."
  labels      = local.labels

  delete_contents_on_destroy = !var.deletion_protection

  depends_on = [google_project_service.apis]
}

# The table the log sink writes the service's stdout entries to. Logging would create it
# on the first export; creating it here, with the result record's schema, lets the views
# exist from day one. With use_partitioned_tables the sink writes one table named after
# the log (run.googleapis.com/stdout -> run_googleapis_com_stdout), partitioned by day on
# `timestamp`.
resource "google_bigquery_table" "stdout" {
  # checkov:skip=CKV_GCP_80: Google-managed encryption is adequate (see the dataset).
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.results.dataset_id
  table_id            = local.sink_table_id
  description         = "Result log entries exported by the ${var.service_name} log sink (one row per entry; may hold duplicates: query the results view)."
  deletion_protection = var.deletion_protection
  labels              = local.labels

  time_partitioning {
    type          = "DAY"
    field         = "timestamp"
    expiration_ms = var.results_partition_expiration_days > 0 ? var.results_partition_expiration_days * 86400000 : null
  }

  # LogEntry columns plus jsonPayload = the result record (shared/results.py); tests/infra
  # checks the two agree.
  schema = file("${path.module}/schema/run_googleapis_com_stdout.json")

  lifecycle {
    # Cloud Logging adds columns itself when entries carry new fields; Terraform must not
    # try to remove them (that would replace the table).
    ignore_changes = [schema]
  }
}

resource "google_bigquery_table" "results" {
  # checkov:skip=CKV_GCP_80: A view stores no data; nothing to encrypt.
  # checkov:skip=CKV_GCP_121: Views hold no data and are recreated from infra/sql; protecting them would only block updates.
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.results.dataset_id
  table_id            = "results"
  description         = "One row per result_id: the latest export of each classification result."
  deletion_protection = false
  labels              = local.labels

  view {
    query = templatefile("${path.module}/sql/results.sql", {
      source = "`${var.project_id}.${google_bigquery_dataset.results.dataset_id}.${google_bigquery_table.stdout.table_id}`"
    })
    use_legacy_sql = false
  }
}

resource "google_bigquery_table" "predictions" {
  # checkov:skip=CKV_GCP_80: A view stores no data; nothing to encrypt.
  # checkov:skip=CKV_GCP_121: Views hold no data and are recreated from infra/sql; protecting them would only block updates.
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.results.dataset_id
  table_id            = "predictions"
  description         = "Top-k predictions of each de-duplicated result, one row per prediction (rank 1 = best)."
  deletion_protection = false
  labels              = local.labels

  view {
    query = templatefile("${path.module}/sql/predictions.sql", {
      results = "`${var.project_id}.${google_bigquery_dataset.results.dataset_id}.${google_bigquery_table.results.table_id}`"
    })
    use_legacy_sql = false
  }
}

resource "google_bigquery_table" "duplicates" {
  # checkov:skip=CKV_GCP_80: A view stores no data; nothing to encrypt.
  # checkov:skip=CKV_GCP_121: Views hold no data and are recreated from infra/sql; protecting them would only block updates.
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.results.dataset_id
  table_id            = "duplicates"
  description         = "Images stored more than once: one row per content hash (source.content_md5) found under more than one gs:// URI, with the URIs."
  deletion_protection = false
  labels              = local.labels

  view {
    query = templatefile("${path.module}/sql/duplicates.sql", {
      results = "`${var.project_id}.${google_bigquery_dataset.results.dataset_id}.${google_bigquery_table.results.table_id}`"
    })
    use_legacy_sql = false
  }
}
