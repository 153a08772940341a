"""Report: figures from result objects (plots), verdicts computed from measured numbers
(checks, verdicts), the markdown summary + results.json (summary), the behaviour table
(behaviour) and the one-page report.html (html, with html_layout / html_parts / html_pairs /
html_assets). Never computes science."""
