"""src/enforce_sdk/store/storage."""
