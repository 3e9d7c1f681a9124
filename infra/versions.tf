terraform {
  # 1.5+: lifecycle preconditions, optional validation messages and templatefile().
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.28 added the Cloud Run GPU fields this configuration sets
      # (node_selector, gpu_zonal_redundancy_disabled). 7.x is compatible;
      # 8.x is not tested yet.
      version = ">= 6.28, < 8.0"
    }
  }
}
