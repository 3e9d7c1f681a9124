# Delivery with nothing lost: each source topic has our own push subscription to a
# route of the service, authenticated with an OIDC token of the invoker account, with
# exponential-backoff retries and a dead-letter topic. Every dead-letter topic has a
# pull subscription, so parked messages are kept (a topic without subscriptions drops
# what is published to it) and can be inspected or replayed.
#
# The service acknowledges permanent failures (2xx, logged as error results) and answers
# 5xx/429 to transient ones, so only messages that keep failing transiently reach the
# dead-letter topics.

locals {
  push_oidc_audience = google_cloud_run_v2_service.service.uri

  # Each source topic: the service route our push subscription delivers to, and the
  # dead-letter topic for what keeps failing there.
  delivery_sources = {
    uploads = {
      topic                  = one(google_pubsub_topic.uploads[*].id)
      route                  = "/events/storage"
      dead_letter_topic_id   = one(google_pubsub_topic.uploads_dead_letter[*].id)
      dead_letter_topic_name = one(google_pubsub_topic.uploads_dead_letter[*].name)
    }
    requests = {
      topic                  = google_pubsub_topic.requests.id
      route                  = "/events/pubsub"
      dead_letter_topic_id   = google_pubsub_topic.requests_dead_letter.id
      dead_letter_topic_name = google_pubsub_topic.requests_dead_letter.name
    }
  }

  # The sources that exist: the uploads topics only with the bucket-notification path.
  deliveries = { for source, delivery in local.delivery_sources : source => delivery if source != "uploads" || local.use_notification }
}

# ---------------------------------------------------------------- uploads (bucket notifications)

resource "google_pubsub_topic" "uploads" {
  # checkov:skip=CKV_GCP_83: Messages hold object names and metadata, not image data; Google-managed encryption is adequate and CMEK would need a KMS key the Cloud Storage and Pub/Sub agents can use.
  count = local.use_notification ? 1 : 0

  project = var.project_id
  name    = "${var.service_name}-uploads"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "uploads_dead_letter" {
  # checkov:skip=CKV_GCP_83: Same content as the uploads topic; Google-managed encryption is adequate.
  count = local.use_notification ? 1 : 0

  project = var.project_id
  name    = "${var.service_name}-uploads-dead-letter"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------- requests (published work)

resource "google_pubsub_topic" "requests" {
  # checkov:skip=CKV_GCP_83: Messages name images (gs:// URIs) or carry small inline images; Google-managed encryption is adequate and CMEK would need a KMS key every publisher's project can use.
  project = var.project_id
  name    = "${var.service_name}-requests"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "requests_dead_letter" {
  # checkov:skip=CKV_GCP_83: Same content as the requests topic; Google-managed encryption is adequate.
  project = var.project_id
  name    = "${var.service_name}-requests-dead-letter"
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------- delivery, per source topic

resource "google_pubsub_subscription" "push" {
  for_each = local.deliveries

  project = var.project_id
  name    = "${var.service_name}-${each.key}-push"
  topic   = each.value.topic
  labels  = local.labels

  ack_deadline_seconds       = var.request_timeout_seconds
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.service.uri}${each.value.route}"

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = local.push_oidc_audience
    }
  }

  retry_policy {
    minimum_backoff = "${var.retry_minimum_backoff_seconds}s"
    maximum_backoff = "${var.retry_maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = each.value.dead_letter_topic_id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expires, however quiet the source
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.push_invoker,
    google_service_account_iam_member.pubsub_mints_invoker_tokens,
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}

# Parked messages wait here for inspection or replay (a topic without subscriptions
# drops what is published to it).
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.deliveries

  project = var.project_id
  name    = "${var.service_name}-${each.key}-dead-letter"
  topic   = each.value.dead_letter_topic_id
  labels  = local.labels

  message_retention_duration = "${var.dead_letter_retention_days * 86400}s"
  retain_acked_messages      = false
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}
