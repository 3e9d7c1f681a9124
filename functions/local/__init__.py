"""The embedded local stack: GCS emulator, functions server, event bridge and log sink."""
