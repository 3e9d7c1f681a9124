# Variant (upload_trigger = "eventarc"): an Eventarc Cloud Storage trigger delivers
# google.cloud.storage.object.v1.finalized CloudEvents to the storage route instead of
# the bucket notification -> topic -> push subscription path in storage.tf/pubsub.tf.
#
# Eventarc manages its own Pub/Sub subscription and offers no dead-letter topic: an
# event that keeps failing is retried with backoff for up to 24 hours and then dropped.
# Use the default "notification" path when no upload may be lost.

resource "google_eventarc_trigger" "uploads" {
  count = local.use_eventarc ? 1 : 0

  project         = var.project_id
  name            = "${var.service_name}-uploads"
  location        = lower(local.uploads_location) # a Cloud Storage trigger lives in its bucket's location
  service_account = google_service_account.invoker.email
  labels          = local.labels

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.finalized"
  }

  matching_criteria {
    attribute = "bucket"
    value     = google_storage_bucket.uploads.name
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.service.name
      region  = var.region
      path    = "/events/storage"
    }
  }

  depends_on = [
    google_project_iam_member.eventarc_receiver,
    google_project_iam_member.eventarc_gcs_publisher,
    google_cloud_run_v2_service_iam_member.push_invoker,
  ]
}
