"""Models: architecture lookups (arch), loading (load), the trigger token (trigger), the
embedded offline model pair (tiny) and the planted known-answer model (planted)."""
