terraform {
  # 1.5+: lifecycle preconditions, optional validation messages and templatefile().
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Every block in infra/ is checked against the schema of google 6.50.0
      # (infra/tools/schema_check.py); 6.28 added the Cloud Run GPU fields. 7.x removed
      # and renamed fields and is not checked yet.
      version = ">= 6.50, < 7.0"
    }
  }
}
