"""Capture: hook installation (hooks) and batched activation extraction (extract)."""
