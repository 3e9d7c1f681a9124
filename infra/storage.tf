resource "google_storage_bucket" "uploads" {
  # checkov:skip=CKV_GCP_62: Access logs would need a second bucket; Cloud Audit Logs (data access) are the supported way to audit reads and writes, and every classification is already logged and exported to BigQuery.
  project  = var.project_id
  name     = local.uploads_bucket_name
  location = local.uploads_location
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  # Overwritten or deleted uploads stay recoverable for a while; the lifecycle rule
  # below deletes the noncurrent versions.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.uploads_retention_days > 0 ? [var.uploads_retention_days] : []
    content {
      condition {
        age        = lifecycle_rule.value
        with_state = "ANY"
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# OBJECT_FINALIZE notifications (JSON_API_V1: the object resource as data, eventType /
# bucketId / objectId / objectGeneration as attributes) go to the uploads topic, which our
# own push subscription delivers to the service's storage route (pubsub.tf).
resource "google_storage_notification" "uploads" {
  count = local.use_notification ? 1 : 0

  bucket             = google_storage_bucket.uploads.name
  topic              = google_pubsub_topic.uploads[0].id
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = var.uploads_object_prefix != "" ? var.uploads_object_prefix : null

  depends_on = [google_pubsub_topic_iam_member.gcs_publishes_uploads]
}
