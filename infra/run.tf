locals {
  # Buckets the code may read (ALLOWED_BUCKETS); the runtime account can read exactly these.
  allowed_buckets = concat([google_storage_bucket.uploads.name], var.readable_buckets)

  # Settings read by the code (shared/config.py SETTINGS) that have their own variable.
  # Every name here and in overridable_settings is a SETTINGS key (tests/infra checks),
  # and together they cover all of SETTINGS.
  service_env_fixed = {
    MODEL_URI          = var.model_uri
    MODEL_CACHE_DIR    = var.model_cache_dir
    TOP_K              = tostring(var.top_k)
    BATCH_MAX_SIZE     = tostring(var.batch_max_size)
    BATCH_MAX_DELAY_MS = tostring(var.batch_max_delay_ms)
    BATCH_QUEUE_SIZE   = tostring(var.batch_queue_size)
    ALLOWED_BUCKETS    = join(",", local.allowed_buckets)
    SKIP_PREFIXES      = join(",", var.skip_prefixes)
    # os.cpu_count() can report the host's cores rather than the instance's vCPUs:
    # size the processes and thread pools from the instance size instead.
    # One server process per vCPU, each with its own model copy and batcher: one Python
    # process tops out near 330 images/s whatever the vCPUs (docs/benchmarks.md).
    WORKERS           = tostring(var.cpu)
    INFERENCE_THREADS = "1"
    DECODE_WORKERS    = "4" # per process: the GPU infers; reads wait on the network
    # Every batch size compiled and warmed before the startup probe passes.
    BATCH_SIZES = "1,8,32" # up to batch_max_size (32)
    ACCELERATOR = "gpu" # no GPU found: fail readiness (logged at ERROR), never serve on the CPU
    # Buckets a caller may name (HTTP, Pub/Sub, BigQuery): the uploads bucket, never the model's.
    REQUEST_BUCKETS = join(",", concat([google_storage_bucket.uploads.name], var.request_buckets))
  }

  # The remaining settings, which settings_overrides may set (their code defaults apply
  # otherwise).
  overridable_settings = [
    "SCORE_THRESHOLD",
    "RESIZE_MODE",
    "COLOR_SPACE",
    "INPUT_RANGE",
    "OUTPUT_KIND",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_REQUEST_BYTES",
    "MAX_INSTANCES",
    "MAX_EVENT_AGE_S",
    "DEDUP_WINDOW_S",
    "FETCH_TIMEOUT_S",
    "DECODE_PIXEL_BUDGET",
  ]

  service_env = merge(local.service_env_fixed, var.settings_overrides)
}

resource "google_cloud_run_v2_service" "service" {
  # Ingress is a variable (default: all) because HTTP API callers may sit outside the
  # project's network; every request still needs an identity token of a principal with
  # run.invoker, and there is no public invoker (tests/infra checks).
  project             = var.project_id
  name                = var.service_name
  location            = var.region
  ingress             = var.ingress
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    service_account                  = google_service_account.runtime.email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "${var.request_timeout_seconds}s"
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    labels                           = local.labels

    scaling {
      min_instance_count = var.min_instance_count
      max_instance_count = var.max_instance_count
    }

    # One NVIDIA L4 per instance.
    node_selector {
      accelerator = "nvidia-l4"
    }
    gpu_zonal_redundancy_disabled = var.gpu_zonal_redundancy_disabled

    containers {
      image = local.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu              = tostring(var.cpu)
          memory           = "${var.memory_gib}Gi"
          "nvidia.com/gpu" = "1"
        }
        # GPU instances are billed for their whole lifetime: keep the CPU allocated so
        # the batcher thread and background work run between requests.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      # The logging library formats trace ids as projects/PROJECT/traces/ID only when it
      # knows the project; Cloud Run does not set this variable itself.
      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = var.project_id
      }

      dynamic "env" {
        for_each = local.service_env
        content {
          name  = env.key
          value = env.value
        }
      }

      # /health answers 200 only once the model is loaded (503 before): no request is
      # routed to an instance that cannot classify yet. 5 s x 48 = up to 240 s to start.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 5
        timeout_seconds       = 3
        failure_threshold     = 48
        http_get {
          path = "/health"
          port = 8080
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 10
        failure_threshold = 5
        http_get {
          path = "/health"
          port = 8080
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = length(setsubtract(keys(var.settings_overrides), local.overridable_settings)) == 0
      error_message = "settings_overrides may only set: ${join(", ", local.overridable_settings)}."
    }
  }

  depends_on = [
    google_project_service.apis,
    google_storage_bucket_iam_member.runtime_reads_uploads,
  ]
}
