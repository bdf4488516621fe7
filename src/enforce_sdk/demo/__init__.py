"""src/enforce_sdk/demo."""
