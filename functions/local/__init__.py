"""The embedded local stack: the GCS and Pub/Sub emulators, the functions server and the log sink."""
