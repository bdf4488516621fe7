"""src/enforce_sdk/policy."""
