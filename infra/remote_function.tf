# Classify from SQL (enable_remote_function): BigQuery remote functions that send image
# URIs to the service's HTTP route, and an object table listing the uploads bucket.
#
#   SELECT uri, bucketeye.classify(uri) AS labels FROM bucketeye.uploads_objects;
#
# BigQuery POSTs batches of calls ({"requestId", "calls": [[uri], ...], ...}) to the
# service's `/` route, which hands them to functions/bigquery_trigger.py; each row gets
# a JSON reply (labels, top_label, top_score, model_id, result_id) or, for a bad row,
# {"status": "error", "error": {code, message}}. Transient trouble answers 429/503,
# which BigQuery retries.
#
# One Cloud resource connection serves both: BigQuery calls the service with an identity
# token of the connection's service account, and lists the bucket for the object table as
# that account. Its only grants (iam.tf): run.invoker on the service, objectViewer on the
# uploads bucket. The service reads the images itself, as its runtime identity, which may
# already read the uploads bucket (ALLOWED_BUCKETS, run.tf).

locals {
  use_remote_function = var.enable_remote_function

  # The service's HTTP route (functions/routes.py HTTP_ROUTE); the HTTP handler passes
  # bodies with "requestId" and "calls" to the remote-function handler.
  remote_function_endpoint = "${google_cloud_run_v2_service.service.uri}/"

  # Sent with every request as userDefinedContext: the predictions kept per row when the
  # call names no top_k (the service's TOP_K, so SQL and the other triggers agree).
  remote_function_context = {
    top_k = tostring(var.top_k)
  }

  # max_staleness as a BigQuery INTERVAL literal, "Y-M D H:M:S".
  object_table_max_staleness = format(
    "0-0 %d %d:%d:0",
    floor(var.object_table_max_staleness_minutes / 1440),
    floor(var.object_table_max_staleness_minutes % 1440 / 60),
    var.object_table_max_staleness_minutes % 60,
  )
}

resource "google_bigquery_connection" "sql" {
  count = local.use_remote_function ? 1 : 0

  project       = var.project_id
  connection_id = "${replace(var.service_name, "-", "_")}_sql"
  location      = local.bigquery_location # remote functions and object tables use a connection in their dataset's location
  friendly_name = "${var.service_name} classify from SQL"
  description   = "Calls the ${var.service_name} Cloud Run service from the remote functions classify/classify_top_k, and lists the uploads bucket for the object table uploads_objects."

  cloud_resource {}

  # Checked once for both routines, and only when they exist.
  lifecycle {
    precondition {
      condition     = var.remote_function_max_batching_rows <= var.batch_queue_size
      error_message = "remote_function_max_batching_rows (${var.remote_function_max_batching_rows}) must not exceed batch_queue_size (${var.batch_queue_size}): the service refuses a request with more calls than BATCH_QUEUE_SIZE, which fails the query."
    }
    precondition {
      condition     = var.top_k >= 1 && var.top_k <= 100
      error_message = "top_k is sent to the remote function as its default top_k, which the service accepts from 1 to 100."
    }
  }

  depends_on = [google_project_service.apis]
}

# The remote functions, each with its arguments in order; all return JSON. Routines cannot
# be overloaded, hence a second name for the two-argument form.
locals {
  remote_functions = {
    classify = {
      arguments   = [{ name = "uri", type = "STRING" }]
      description = "Classifies the image at a gs:// URI with the ${var.service_name} service. Returns JSON {status, labels: [{label, label_id, score}], top_label, top_score, model_id, result_id}, or {status: \"error\", error: {code, message}} for an image that cannot be classified."
    }
    classify_top_k = {
      arguments   = [{ name = "uri", type = "STRING" }, { name = "top_k", type = "INT64" }]
      description = "Like classify(uri), keeping top_k (1 to 100) predictions; NULL top_k keeps the default (${var.top_k})."
    }
  }
}

resource "google_bigquery_routine" "remote" {
  for_each = { for name, function in local.remote_functions : name => function if local.use_remote_function }

  project         = var.project_id
  dataset_id      = google_bigquery_dataset.results.dataset_id
  routine_id      = each.key
  routine_type    = "SCALAR_FUNCTION"
  definition_body = "" # a remote function has no body (and no language)
  description     = each.value.description

  dynamic "arguments" {
    for_each = each.value.arguments
    content {
      name      = arguments.value.name
      data_type = jsonencode({ typeKind = arguments.value.type })
    }
  }

  return_type = jsonencode({ typeKind = "JSON" })

  remote_function_options {
    endpoint             = local.remote_function_endpoint
    connection           = google_bigquery_connection.sql[0].name
    max_batching_rows    = tostring(var.remote_function_max_batching_rows)
    user_defined_context = local.remote_function_context
  }

  # Usable only once BigQuery may call the service.
  depends_on = [google_cloud_run_v2_service_iam_member.sql_invoker]
}

# An object table: one row per object in the uploads bucket (uri, generation,
# content_type, size, md5_hash, updated, metadata), read through the connection.
resource "google_bigquery_table" "uploads_objects" {
  # checkov:skip=CKV_GCP_80: An object table stores no data, only a cached listing of object metadata; nothing to encrypt with a customer key.
  # checkov:skip=CKV_GCP_121: The object table holds no data and is recreated from this file; deletion protection would only block replacing it (e.g. when the connection changes).
  count = local.use_remote_function ? 1 : 0

  project             = var.project_id
  dataset_id          = google_bigquery_dataset.results.dataset_id
  table_id            = "uploads_objects"
  description         = "Object table over gs://${google_storage_bucket.uploads.name}: one row per object. Classify with `${google_bigquery_dataset.results.dataset_id}.classify(uri)`."
  deletion_protection = false
  labels              = local.labels

  # Queries use the metadata cache while it is younger than this (so they may miss the
  # newest objects), and list the bucket otherwise (slower with many objects). AUTOMATIC
  # refreshes the cache every 30 to 60 minutes.
  max_staleness = local.object_table_max_staleness

  external_data_configuration {
    autodetect          = false
    connection_id       = google_bigquery_connection.sql[0].name
    source_uris         = ["gs://${google_storage_bucket.uploads.name}/*"]
    object_metadata     = "SIMPLE"
    metadata_cache_mode = "AUTOMATIC"
  }

  depends_on = [google_storage_bucket_iam_member.sql_lists_uploads]
}
