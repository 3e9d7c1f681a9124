# ---------------------------------------------------------------- project & naming

variable "project_id" {
  type        = string
  description = "Google Cloud project to deploy into."
}

variable "region" {
  type        = string
  description = "Region for Cloud Run, Artifact Registry, the uploads bucket and BigQuery. Must offer Cloud Run GPUs (nvidia-l4), e.g. europe-west1, europe-west4, us-east4, asia-southeast1, us-central1."
  default     = "europe-west1"
}

variable "service_name" {
  type        = string
  description = "Cloud Run service name; also the prefix of topics, subscriptions, service accounts and metrics."
  default     = "bucketeye"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,18}[a-z0-9]$", var.service_name))
    error_message = "service_name: lowercase letters, digits and dashes, starting with a letter and not ending with a dash (Cloud Run refuses that), 2 to 20 characters (service-account ids are built from it)."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels put on every resource that takes labels."
  default     = {}
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the Cloud Run service, the BigQuery dataset/table and the uploads bucket's objects from `terraform destroy`. Set false (and apply) before tearing a test deployment down."
  default     = true
}

# ---------------------------------------------------------------- image

variable "repository_id" {
  type        = string
  description = "Artifact Registry (Docker) repository holding the service image."
  default     = "bucketeye"
}

variable "image_name" {
  type        = string
  description = "Image name inside the repository (cloudbuild.yaml's _IMAGE)."
  default     = "bucketeye"
}

variable "image_tag" {
  type        = string
  description = "Image tag to deploy (cloudbuild.yaml tags every build with its BUILD_ID and _TAG). Deploy a new build by applying with a new tag: re-applying the same moving tag does not roll out a new revision."
  default     = "latest"
}

variable "image" {
  type        = string
  description = "Full image reference overriding repository_id/image_name/image_tag (e.g. an image digest). Empty: built from those."
  default     = ""
}

variable "image_keep_count" {
  type        = number
  description = "Artifact Registry cleanup: always keep this many most recent image versions, whatever their age."
  default     = 10
}

variable "image_retention_days" {
  type        = number
  description = "Artifact Registry cleanup: delete tagged image versions older than this many days, except the image_keep_count most recent."
  default     = 90
}

variable "untagged_image_retention_days" {
  type        = number
  description = "Artifact Registry cleanup: delete untagged image versions older than this many days."
  default     = 14
}

variable "image_pusher_members" {
  type        = list(string)
  description = "Principals besides the build account (build.tf, which has it already) granted roles/artifactregistry.writer on the repository, e.g. a CI system's service account."
  default     = []
}

# ---------------------------------------------------------------- Cloud Run service

variable "cpu" {
  type        = number
  description = "vCPUs per instance (4 to 8 with a GPU); one server process runs per vCPU (WORKERS). Decoding runs on the CPUs, so the GPU is fed by them: 8 about doubles the images per second of 4 for 35 % more per hour (docs/deploy.md, section 7)."
  default     = 8

  validation {
    condition     = var.cpu >= 4 && var.cpu <= 8
    error_message = "A Cloud Run instance with an nvidia-l4 GPU needs 4 to 8 vCPUs."
  }
}

variable "memory_gib" {
  type        = number
  description = "Memory per instance in GiB (16 to 32 with a GPU). Each server process holds its own model copy and CUDA context: 32 for 8 processes."
  default     = 32

  validation {
    condition     = var.memory_gib >= 16 && var.memory_gib <= 32
    error_message = "A Cloud Run instance with an nvidia-l4 GPU needs 16 to 32 GiB of memory."
  }
}

variable "gpu_zonal_redundancy_disabled" {
  type        = bool
  description = "true: no GPU capacity is reserved for zonal failover (cheaper, and uses the 'without zonal redundancy' GPU quota). false: zonal redundancy (costs more, separate quota)."
  default     = true
}

variable "concurrency" {
  type        = number
  description = "Requests one instance handles at once (max_instance_request_concurrency). The batcher gathers images from concurrent requests into GPU batches. Keep it at or below THREADS in the Dockerfile (64): each request holds one gunicorn thread."
  default     = 32

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 64
    error_message = "concurrency must be 1..64 (the image runs 64 gunicorn threads; raise THREADS in the Dockerfile first)."
  }
}

variable "min_instance_count" {
  type        = number
  description = "Instances kept warm. 0 scales to zero (a GPU cold start, model load included, then takes seconds); 1 avoids cold starts but bills a GPU around the clock."
  default     = 0
}

variable "max_instance_count" {
  type        = number
  description = "Most instances (GPUs). Must fit the project's Cloud Run L4 GPU quota in the region (the one matching gpu_zonal_redundancy_disabled; new projects have none until it is requested, docs/deploy.md step 0): creating the service fails otherwise. 1 fits a first grant; raise it once more quota is granted."
  default     = 1

  validation {
    condition     = var.max_instance_count >= 1 && floor(var.max_instance_count) == var.max_instance_count
    error_message = "max_instance_count must be a whole number >= 1 (and within the GPU quota)."
  }
}

variable "request_timeout_seconds" {
  type        = number
  description = "Cloud Run request timeout; also the push subscriptions' ack deadline (Pub/Sub waits at most 600 s for a push response)."
  default     = 300

  validation {
    condition     = var.request_timeout_seconds >= 10 && var.request_timeout_seconds <= 600
    error_message = "request_timeout_seconds must be 10..600 (the push ack deadline cannot exceed 600 s)."
  }
}

variable "ingress" {
  type        = string
  description = "Cloud Run ingress. INGRESS_TRAFFIC_ALL lets authenticated HTTP API callers reach the service from anywhere (IAM still applies: there is no public invoker); INGRESS_TRAFFIC_INTERNAL_ONLY admits only Pub/Sub, Eventarc and VPC traffic of this project."
  default     = "INGRESS_TRAFFIC_ALL"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress must be INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "invoker_members" {
  type        = list(string)
  description = "Principals allowed to call the HTTP API (roles/run.invoker on the service), e.g. user:you@example.com or serviceAccount:caller@PROJECT.iam.gserviceaccount.com. Public principals are refused."
  default     = []

  validation {
    condition     = alltrue([for m in var.invoker_members : !can(regex("^all(Users|AuthenticatedUsers)$", m))])
    error_message = "The service must not be public: invoker_members may not contain public principals."
  }
}

# ---------------------------------------------------------------- settings read by the code (shared/config.py)

variable "model_uri" {
  type        = string
  description = "MODEL_URI: model to serve (gs:// or a path in the image). Empty: the built-in EfficientNet-Lite0 baked into the image. A gs:// model's bucket must be listed in readable_buckets."
  default     = ""
}

variable "model_cache_dir" {
  type        = string
  description = "MODEL_CACHE_DIR: where the image holds the built-in model and downloads gs:// models. Must match the Dockerfile."
  default     = "/opt/bucketeye/models"
}

variable "top_k" {
  type        = number
  description = "TOP_K: predictions kept per image."
  default     = 5
}

variable "batch_max_size" {
  type        = number
  description = "BATCH_MAX_SIZE: most images the batcher runs through the model at once. On a GPU larger batches are nearly free; keep it at most concurrency x images per request."
  default     = 32
}

variable "batch_max_delay_ms" {
  type        = number
  description = "BATCH_MAX_DELAY_MS: how long the batcher waits for a batch to fill."
  default     = 5
}

variable "batch_queue_size" {
  type        = number
  description = "BATCH_QUEUE_SIZE: images waiting for the model before requests are refused with 429/503 (Pub/Sub then redelivers)."
  default     = 512
}

variable "skip_prefixes" {
  type        = list(string)
  description = "SKIP_PREFIXES: object-name prefixes in the uploads bucket that are never classified."
  default     = []
}

variable "readable_buckets" {
  type        = list(string)
  description = "Buckets besides the uploads bucket the service may read (roles/storage.objectViewer, and added to ALLOWED_BUCKETS), e.g. a model bucket. For callers to name their objects in requests, list them in request_buckets too."
  default     = []
}

variable "request_buckets" {
  type        = list(string)
  description = "REQUEST_BUCKETS: buckets besides the uploads bucket whose objects callers may name in HTTP, Pub/Sub and BigQuery requests. Each must also be in readable_buckets. The model's bucket is never read for a request."
  default     = []
}

variable "settings_overrides" {
  type        = map(string)
  description = "Other settings from shared/config.py SETTINGS as environment variables, e.g. { MAX_IMAGE_BYTES = \"10485760\" }. Only names listed in run.tf's local.overridable_settings are accepted (settings with their own variable above are set there)."
  default     = {}
}

# ---------------------------------------------------------------- uploads bucket & delivery

variable "uploads_bucket_name" {
  type        = string
  description = "Name of the uploads bucket. Empty: PROJECT-SERVICE-uploads."
  default     = ""
}

variable "uploads_bucket_location" {
  type        = string
  description = "Location of the uploads bucket. Empty: the region (required for the Eventarc variant; also keeps reads in-region)."
  default     = ""
}

variable "uploads_retention_days" {
  type        = number
  description = "Delete uploaded objects this many days after upload. 0 keeps them."
  default     = 0
}

variable "noncurrent_version_retention_days" {
  type        = number
  description = "The bucket keeps overwritten/deleted objects as noncurrent versions for this many days (object versioning), then deletes them."
  default     = 7
}

variable "uploads_object_prefix" {
  type        = string
  description = "Only objects whose names start with this prefix are sent for classification (bucket-notification path only: Eventarc triggers cannot filter on object names; use skip_prefixes there). Empty: every object."
  default     = ""
}

variable "uploader_members" {
  type        = list(string)
  description = "Principals granted roles/storage.objectCreator on the uploads bucket."
  default     = []
}

variable "request_publisher_members" {
  type        = list(string)
  description = "Principals granted roles/pubsub.publisher on the requests topic."
  default     = []
}

variable "upload_trigger" {
  type        = string
  description = "How uploads reach the service. \"notification\" (default): bucket notification -> topic -> our push subscription with retry policy and a dead-letter topic, so a message that keeps failing is parked, never lost. \"eventarc\": an Eventarc Cloud Storage trigger instead; Eventarc offers no dead-letter topic, so an event still failing after its retries (up to 24 h) is dropped."
  default     = "notification"

  validation {
    condition     = contains(["notification", "eventarc"], var.upload_trigger)
    error_message = "upload_trigger must be \"notification\" or \"eventarc\"."
  }
}

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries of one message before it is moved to the dead-letter topic (5..100). Transient failures answer 5xx/429 and are retried; permanent ones are acknowledged with 2xx and never reach the dead-letter topic."
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be 5..100."
  }
}

variable "retry_minimum_backoff_seconds" {
  type        = number
  description = "Push retry policy: first redelivery delay (exponential backoff up to retry_maximum_backoff_seconds)."
  default     = 10
}

variable "retry_maximum_backoff_seconds" {
  type        = number
  description = "Push retry policy: longest redelivery delay (at most 600)."
  default     = 600

  validation {
    condition     = var.retry_maximum_backoff_seconds <= 600
    error_message = "Pub/Sub allows at most 600 s of backoff."
  }
}

variable "dead_letter_retention_days" {
  type        = number
  description = "How long dead-lettered messages wait in the dead-letter subscriptions for inspection or replay (1..31 days)."
  default     = 14

  validation {
    condition     = var.dead_letter_retention_days >= 1 && var.dead_letter_retention_days <= 31
    error_message = "dead_letter_retention_days must be 1..31."
  }
}

# ---------------------------------------------------------------- BigQuery & monitoring

variable "dataset_id" {
  type        = string
  description = "BigQuery dataset receiving the results (log sink) and holding the views."
  default     = "bucketeye"

  validation {
    condition     = can(regex("^[A-Za-z0-9_]{1,1024}$", var.dataset_id))
    error_message = "dataset_id: letters, digits and underscores only (BigQuery allows no dashes), at most 1024 characters."
  }
}

variable "bigquery_location" {
  type        = string
  description = "BigQuery dataset location. Empty: the region."
  default     = ""
}

variable "results_partition_expiration_days" {
  type        = number
  description = "Delete exported result partitions older than this many days. 0 keeps them forever."
  default     = 0
}

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids (projects/PROJECT/notificationChannels/ID) the alert policies notify. Empty: alerts open incidents without notifying anyone."
  default     = []
}

variable "alert_error_ratio" {
  type        = number
  description = "Alert when error results exceed this fraction of all results over 10 minutes."
  default     = 0.05
}

# ---------------------------------------------------------------- classify from SQL (remote_function.tf)

variable "enable_remote_function" {
  type        = bool
  description = "Create the BigQuery remote functions classify(uri) and classify_top_k(uri, top_k) in the results dataset, the object table uploads_objects over the uploads bucket, and the Cloud resource connection they use (its service account may only invoke the service and read the uploads bucket's objects)."
  default     = true
}

variable "remote_function_max_batching_rows" {
  type        = number
  description = "Most rows BigQuery sends to the service in one request (each row is one image). Larger batches mean fewer requests, but a transient failure of any image makes BigQuery retry the whole batch, and one request's images are fetched and decoded by one instance. Must not exceed batch_queue_size: the service refuses a request with more calls than BATCH_QUEUE_SIZE. The batcher already gathers images from concurrent requests into GPU batches, so it need not be large."
  default     = 50

  validation {
    condition     = var.remote_function_max_batching_rows >= 1 && floor(var.remote_function_max_batching_rows) == var.remote_function_max_batching_rows
    error_message = "remote_function_max_batching_rows must be a whole number >= 1 (0 would let BigQuery choose the batch size, which may exceed the service's BATCH_QUEUE_SIZE)."
  }
}

variable "object_table_max_staleness_minutes" {
  type        = number
  description = "The object table's max_staleness: queries use the cached bucket listing while it is younger than this (so they may miss objects uploaded since), and list the bucket afresh otherwise (slower with millions of objects). The cache refreshes itself every 30 to 60 minutes. 30 to 10080 (7 days)."
  default     = 60

  validation {
    condition     = var.object_table_max_staleness_minutes >= 30 && var.object_table_max_staleness_minutes <= 10080 && floor(var.object_table_max_staleness_minutes) == var.object_table_max_staleness_minutes
    error_message = "object_table_max_staleness_minutes must be a whole number from 30 to 10080."
  }
}
