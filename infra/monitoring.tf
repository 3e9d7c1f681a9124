locals {
  results_metric_type = "logging.googleapis.com/user/${google_logging_metric.results.name}"

  # Dead-letter subscriptions that exist in this configuration, by what they hold.
  dead_letter_subscriptions = { for source, subscription in google_pubsub_subscription.dead_letter : source => subscription.name }
}

# A new log-based metric takes minutes to become usable in alert policies: created right
# after it, the policy fails the first apply ("Cannot find metric(s) that match type").
# Wait here instead of asking for a second apply; a replaced metric waits again.
resource "time_sleep" "metrics_visible" {
  create_duration = "180s"

  triggers = {
    results = google_logging_metric.results.id
  }
}

# Share of error results (permanent and transient) among all results.
resource "google_monitoring_alert_policy" "error_ratio" {
  project               = var.project_id
  display_name          = "${var.service_name}: error results above ${var.alert_error_ratio * 100}%"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "WARNING"
  user_labels           = local.labels

  conditions {
    display_name = "error results / all results over 10 min"

    condition_threshold {
      filter             = "resource.type = \"cloud_run_revision\" AND metric.type = \"${local.results_metric_type}\" AND metric.label.status = \"error\""
      denominator_filter = "resource.type = \"cloud_run_revision\" AND metric.type = \"${local.results_metric_type}\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_error_ratio
      duration           = "0s"

      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      More than ${var.alert_error_ratio * 100}% of bucketeye results were errors over 10 minutes.
      Break them down by code: metric `${local.results_metric_type}` grouped by `error_code`
      and `retryable`, or in BigQuery (view `${var.project_id}.${var.dataset_id}.results`,
      `status = 'error'`, grouped by `error_code`).
      Permanent codes (unsupported_format, corrupt_image, ...) point at what is being uploaded;
      transient ones (fetch_failed, model_error, overloaded) at the service.
    EOT
  }

  alert_strategy {
    auto_close = "3600s"
  }

  depends_on = [time_sleep.metrics_visible]
}

# Anything in a dead-letter subscription is a message that failed transiently
# max_delivery_attempts times: someone should look at it.
resource "google_monitoring_alert_policy" "dead_letter_backlog" {
  project               = var.project_id
  display_name          = "${var.service_name}: messages in a dead-letter subscription"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = "ERROR"
  user_labels           = local.labels

  dynamic "conditions" {
    for_each = local.dead_letter_subscriptions
    content {
      display_name = "${conditions.key} dead-letter backlog > 0"

      condition_threshold {
        filter          = "resource.type = \"pubsub_subscription\" AND resource.label.subscription_id = \"${conditions.value}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
        comparison      = "COMPARISON_GT"
        threshold_value = 0
        duration        = "60s"

        aggregations {
          alignment_period   = "60s"
          per_series_aligner = "ALIGN_MAX"
        }

        trigger {
          count = 1
        }
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      Messages were dead-lettered after ${var.max_delivery_attempts} failed deliveries.
      Inspect them: `gcloud pubsub subscriptions pull SUBSCRIPTION --limit 10` (without
      --auto-ack they stay), fix the cause, then replay them to the source topic (see
      docs/deploy.md, "Dead letters").
    EOT
  }

  alert_strategy {
    auto_close = "86400s"
  }
}
