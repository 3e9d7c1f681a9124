# bucketeye: serverless image classification on Cloud Run (GPU).
#
# Files by concern:
#   apis.tf        required Google APIs and the Pub/Sub service agent
#   registry.tf    Artifact Registry repository for the container image
#   build.tf       Cloud Build's own service account and source bucket
#   iam.tf         service accounts and every IAM grant (resource-level where possible)
#   storage.tf     uploads bucket and its Pub/Sub notification
#   pubsub.tf      topics, push subscriptions, dead-letter topics
#   eventarc.tf    optional Eventarc trigger for uploads (no dead-lettering)
#   run.tf         the Cloud Run GPU service
#   bigquery.tf    dataset, the log-sink table and the results/predictions views
#   logging.tf     log sink to BigQuery and log-based metrics
#   monitoring.tf  alert policies
#   remote_function.tf  classify from SQL: BigQuery remote functions and an object table
#                       over the uploads bucket (enable_remote_function)
#   moved.tf       old addresses of resources now written with for_each

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

# The Cloud Storage service agent publishes bucket notifications.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [google_project_service.apis]
}

locals {
  # Must equal shared.APP_NAME: every result record carries it as jsonPayload.app and
  # the sink/metrics keep only those entries (tests/infra checks the two agree).
  app_name = "bucketeye"

  image = var.image != "" ? var.image : "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}/${var.image_name}:${var.image_tag}"

  uploads_bucket_name = var.uploads_bucket_name != "" ? var.uploads_bucket_name : "${var.project_id}-${var.service_name}-uploads"
  uploads_location    = var.uploads_bucket_location != "" ? var.uploads_bucket_location : var.region
  bigquery_location   = var.bigquery_location != "" ? var.bigquery_location : var.region

  use_notification = var.upload_trigger == "notification"
  use_eventarc     = var.upload_trigger == "eventarc"

  pubsub_service_agent = google_project_service_identity.pubsub.member
  gcs_service_agent    = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"

  # Log entries the sink exports and the metrics count: the service's stdout, result
  # records only (the logging library's first line is a diagnostic entry without `app`).
  stdout_log_name = "projects/${var.project_id}/logs/run.googleapis.com%2Fstdout"
  results_filter  = <<-EOT
    resource.type="cloud_run_revision"
    resource.labels.service_name="${var.service_name}"
    logName="${local.stdout_log_name}"
    jsonPayload.app="bucketeye"
  EOT

  # The table Cloud Logging writes stdout entries to (partitioned tables: one table).
  sink_table_id = "run_googleapis_com_stdout"

  labels = merge({ app = local.app_name }, var.labels)
}
