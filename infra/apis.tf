locals {
  apis = toset([
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigqueryconnection.googleapis.com", # the remote functions' and object table's connection
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com", # identity tokens by impersonation (docs/deploy.md)
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = local.apis

  project = var.project_id
  service = each.value

  # Other workloads in the project may use these APIs: never switch them off on destroy.
  disable_on_destroy         = false
  disable_dependent_services = false
}

# The Pub/Sub service agent mints the push tokens and dead-letters (iam.tf). On a new
# project it may not exist yet, or not be visible to IAM, right after the API is enabled:
# create it explicitly, so every grant to it waits for it. (google-beta only.)
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.apis]
}
