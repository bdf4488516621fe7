"""src/enforce_sdk/store/storage/redis_cluster."""
