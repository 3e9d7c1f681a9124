# Resources that were written out one by one and are now instances of one resource over a
# map: existing deployments keep them (Terraform moves them in state, nothing is replaced).

moved {
  from = google_bigquery_routine.classify[0]
  to   = google_bigquery_routine.remote["classify"]
}

moved {
  from = google_bigquery_routine.classify_top_k[0]
  to   = google_bigquery_routine.remote["classify_top_k"]
}

moved {
  from = google_pubsub_subscription.uploads_push[0]
  to   = google_pubsub_subscription.push["uploads"]
}

moved {
  from = google_pubsub_subscription.requests_push
  to   = google_pubsub_subscription.push["requests"]
}

moved {
  from = google_pubsub_subscription.uploads_dead_letter[0]
  to   = google_pubsub_subscription.dead_letter["uploads"]
}

moved {
  from = google_pubsub_subscription.requests_dead_letter
  to   = google_pubsub_subscription.dead_letter["requests"]
}

moved {
  from = google_pubsub_topic_iam_member.dlq_publisher_uploads[0]
  to   = google_pubsub_topic_iam_member.dead_letter_publisher["uploads"]
}

moved {
  from = google_pubsub_topic_iam_member.dlq_publisher_requests
  to   = google_pubsub_topic_iam_member.dead_letter_publisher["requests"]
}

moved {
  from = google_pubsub_subscription_iam_member.dlq_subscriber_uploads[0]
  to   = google_pubsub_subscription_iam_member.dead_letter_subscriber["uploads"]
}

moved {
  from = google_pubsub_subscription_iam_member.dlq_subscriber_requests
  to   = google_pubsub_subscription_iam_member.dead_letter_subscriber["requests"]
}
