"""The combined server's routes, shared with the Terraform checks."""
STORAGE_ROUTE = "/events/storage"
PUBSUB_ROUTE = "/events/pubsub"
HTTP_ROUTE = "/"
# Readiness and health: what Cloud Run's probes and the docs use. Not /healthz: Cloud Run
# reserves some paths ending in "z", so an outside GET /healthz may be answered by Google's
# front end instead of the service.
HEALTH_ROUTE = "/health"
# The old path, still served for local tools and scripts that poll it.
LEGACY_HEALTH_ROUTE = "/healthz"
