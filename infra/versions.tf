terraform {
  # 1.5+: lifecycle preconditions, optional validation messages and templatefile().
  required_version = ">= 1.5"

  # Every block in infra/ is checked against these providers' schemas at the versions
  # named here (infra/tools/schema_check.py): google and google-beta 6.50.0, time 0.13.1.
  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.28 added the Cloud Run GPU fields. 7.x removed and renamed fields and is not
      # checked yet.
      version = ">= 6.50, < 7.0"
    }
    google-beta = {
      # Only for google_project_service_identity (the Pub/Sub service agent, apis.tf),
      # which the google provider lacks.
      source  = "hashicorp/google-beta"
      version = ">= 6.50, < 7.0"
    }
    time = {
      # time_sleep: waits for what Google creates asynchronously (monitoring.tf, iam.tf).
      source  = "hashicorp/time"
      version = ">= 0.13.1, < 1.0"
    }
  }
}
