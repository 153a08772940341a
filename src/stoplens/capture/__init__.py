"""Capture: hook installation (hooks), batched activation extraction and the stop readout
(extract), aligned contrast pairs (pairs), the Δ sets the analyses read (deltaset, captured by
delta_capture), hook sites (sites) and the run-dir activation cache (store)."""
