"""src/enforce_sdk/config."""
