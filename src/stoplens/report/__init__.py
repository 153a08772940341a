"""Report: figures from result objects (plots), verdicts computed from measured numbers
(verdicts), and the markdown summary + results.json (summary). Never computes science."""
