"""The server: gRPC service, store access, logs on disk, state-directory lock, local worker provider."""
