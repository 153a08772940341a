"""Models: architecture lookups (arch), loading (load), chat template → ids (chat), the trigger
token (trigger), small random models from configs (tiny) and the planted known-answer model
(planted). Training a model is `stoplens.train`; the embedded offline pair, which trains one,
is `stoplens.embedded`."""
