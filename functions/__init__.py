"""Trigger adapters: turn CloudEvents, Pub/Sub pushes and HTTP requests into ImageRefs."""
