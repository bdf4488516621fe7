"""src/enforce_sdk/model."""
