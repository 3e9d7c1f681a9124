resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84: Google-managed encryption is adequate for a public-code container image; CMEK would add a KMS key ring and key-access grants for Artifact Registry, Cloud Build and Cloud Run.
  project       = var.project_id
  location      = var.region
  repository_id = var.repository_id
  description   = "bucketeye service images (cloudbuild.yaml pushes here)."
  format        = "DOCKER"
  labels        = local.labels

  cleanup_policy_dry_run = false

  # Untagged layers of superseded builds pile up quickly (the GPU image is several GB).
  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "${var.untagged_image_retention_days * 86400}s"
    }
  }

  cleanup_policies {
    id     = "delete-old-tagged"
    action = "DELETE"
    condition {
      tag_state  = "TAGGED"
      older_than = "${var.image_retention_days * 86400}s"
    }
  }

  # KEEP wins over DELETE: the most recent versions (the running revision's image, unless
  # an old build was deployed on purpose, and a few rollback targets) always stay.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.image_keep_count
    }
  }

  depends_on = [google_project_service.apis]
}
