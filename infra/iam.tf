# Identities and every IAM grant, on the narrowest resource that works. The only
# project-level grants are the two the Eventarc variant cannot do without, and the build
# account's log writing (build.tf), which exists at project level only.

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = "${var.service_name}-run"
  display_name = "bucketeye service runtime"
  description  = "Identity of the Cloud Run service: reads images from the allowed buckets. Logs go to stdout, which needs no role."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.service_name}-push"
  display_name = "bucketeye push invoker"
  description  = "Identity in the OIDC token of Pub/Sub pushes and Eventarc deliveries; may only invoke the service."

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------- runtime: read images

resource "google_storage_bucket_iam_member" "runtime_reads_uploads" {
  bucket = google_storage_bucket.uploads.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.runtime.member
}

resource "google_storage_bucket_iam_member" "runtime_reads_extra" {
  for_each = toset(var.readable_buckets)

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.runtime.member
}

# ---------------------------------------------------------------- who may invoke the service

resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  project  = var.project_id
  location = google_cloud_run_v2_service.service.location
  name     = google_cloud_run_v2_service.service.name
  role     = "roles/run.invoker"
  member   = google_service_account.invoker.member
}

resource "google_cloud_run_v2_service_iam_member" "http_invokers" {
  for_each = toset(var.invoker_members)

  project  = var.project_id
  location = google_cloud_run_v2_service.service.location
  name     = google_cloud_run_v2_service.service.name
  role     = "roles/run.invoker"
  member   = each.value
}

# BigQuery creates the connection's service account with the connection, but IAM may not
# know it for a minute or so: granting it at once can fail with "does not exist".
resource "time_sleep" "sql_connection_account" {
  count = local.use_remote_function ? 1 : 0

  create_duration = "60s"

  triggers = {
    account = google_bigquery_connection.sql[0].cloud_resource[0].service_account_id
  }
}

# BigQuery calls the service for the remote functions (remote_function.tf) with an identity
# token of the connection's service account: the one grant it has on the service.
resource "google_cloud_run_v2_service_iam_member" "sql_invoker" {
  count = local.use_remote_function ? 1 : 0

  project  = var.project_id
  location = google_cloud_run_v2_service.service.location
  name     = google_cloud_run_v2_service.service.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_bigquery_connection.sql[0].cloud_resource[0].service_account_id}"

  depends_on = [time_sleep.sql_connection_account]
}

# Pub/Sub mints the push OIDC tokens as the invoker account.
resource "google_service_account_iam_member" "pubsub_mints_invoker_tokens" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# ---------------------------------------------------------------- dead-lettering (Pub/Sub service agent)

# To dead-letter, the Pub/Sub service agent publishes to the dead-letter topic and
# acknowledges on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.deliveries

  project = var.project_id
  topic   = each.value.dead_letter_topic_name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.deliveries

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# ---------------------------------------------------------------- producers

# Cloud Storage publishes bucket notifications as its service agent.
resource "google_pubsub_topic_iam_member" "gcs_publishes_uploads" {
  count = local.use_notification ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.uploads[0].name
  role    = "roles/pubsub.publisher"
  member  = local.gcs_service_agent
}

resource "google_storage_bucket_iam_member" "uploaders" {
  for_each = toset(var.uploader_members)

  bucket = google_storage_bucket.uploads.name
  role   = "roles/storage.objectCreator"
  member = each.value
}

resource "google_pubsub_topic_iam_member" "request_publishers" {
  for_each = toset(var.request_publisher_members)

  project = var.project_id
  topic   = google_pubsub_topic.requests.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

resource "google_artifact_registry_repository_iam_member" "image_pushers" {
  for_each = toset(var.image_pusher_members)

  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = each.value
}

# ---------------------------------------------------------------- classify from SQL

# The object table lists the uploads bucket as the connection's service account (object
# metadata only; the service fetches the images with its own identity). Besides
# sql_invoker above, the account's only grant.
resource "google_storage_bucket_iam_member" "sql_lists_uploads" {
  count = local.use_remote_function ? 1 : 0

  bucket = google_storage_bucket.uploads.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_bigquery_connection.sql[0].cloud_resource[0].service_account_id}"

  depends_on = [time_sleep.sql_connection_account]
}

# ---------------------------------------------------------------- log sink writer

# The sink's own writer identity may write to this dataset only.
resource "google_bigquery_dataset_iam_member" "sink_writer" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.results.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = google_logging_project_sink.results.writer_identity
}

# ---------------------------------------------------------------- Eventarc variant only

# Eventarc accepts events for a trigger's service account only with this role, which
# exists at project level only.
resource "google_project_iam_member" "eventarc_receiver" {
  count = local.use_eventarc ? 1 : 0

  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.invoker.member
}

# Eventarc's Cloud Storage triggers publish through a topic Eventarc creates and names
# itself, so the Cloud Storage service agent needs publisher on the project.
resource "google_project_iam_member" "eventarc_gcs_publisher" {
  count = local.use_eventarc ? 1 : 0

  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = local.gcs_service_agent
}
