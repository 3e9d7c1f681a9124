# Cloud Build's own identity. New projects may build as an account that cannot read the
# uploaded source or write build logs (or holds far more than a build needs). Builds run
# as this account instead (`gcloud builds submit --service-account`, docs/deploy.md), with
# exactly what cloudbuild.yaml needs:
#   read the uploaded source  objectViewer on the source bucket below
#   pull the cache, push      artifactregistry.writer on the image repository
#   write its logs            logging.logWriter (project level only; cloudbuild.yaml logs
#                             to Cloud Logging only, which a user-chosen account requires)

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.service_name}-build"
  display_name = "bucketeye image builds"
  description  = "Identity of Cloud Build runs of cloudbuild.yaml: reads the uploaded source, pushes the image, writes build logs."

  depends_on = [google_project_service.apis]
}

# `gcloud builds submit --gcs-source-staging-dir=gs://BUCKET/source` uploads the source here.
resource "google_storage_bucket" "build_source" {
  # checkov:skip=CKV_GCP_62: Holds only source archives uploaded for builds, deleted after a week; Cloud Audit Logs cover access.
  # checkov:skip=CKV_GCP_78: Each upload is a new object that is read once by one build; versioning would only keep deleted archives.
  project  = var.project_id
  name     = "${var.project_id}-${var.service_name}-build-source"
  location = var.region
  labels   = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # nothing here outlives its build

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

locals {
  build_member = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.build_source.name
  role   = "roles/storage.objectViewer"
  member = local.build_member
}

resource "google_artifact_registry_repository_iam_member" "build_pushes_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = local.build_member
}

resource "google_project_iam_member" "build_writes_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = local.build_member
}
