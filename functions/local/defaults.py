"""The local stack's fixed defaults (kept apart so building the CLI parser stays cheap)."""
from functions.warehouse import PROJECT  # noqa: F401  (the stack's project is the warehouse's)

HOST = "127.0.0.1"  # loopback only
DEFAULT_PORT = 8080  # functions server
DEFAULT_GCS_PORT = 4443  # GCS emulator
DEFAULT_PUBSUB_PORT = 8085  # Pub/Sub emulator (its own default port)
DEFAULT_BUCKET = "local-bucketeye-uploads"  # the cloud's bucket is PROJECT-bucketeye-uploads
