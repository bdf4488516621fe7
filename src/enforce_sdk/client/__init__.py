"""src/enforce_sdk/client."""
