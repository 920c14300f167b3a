"""The worker: registration and heartbeat, the local process pool, output shipping."""
