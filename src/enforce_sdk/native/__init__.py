"""src/enforce_sdk/native."""
