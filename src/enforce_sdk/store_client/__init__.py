"""src/enforce_sdk/store_client."""
