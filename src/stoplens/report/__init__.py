"""Report: figures from result objects (`figures`), verdicts computed from measured numbers
(`checks`, `verdicts`), the markdown summary + results.json (`summary`, with
`components_markdown` and `behaviour`), and the one-page report.html (`html`). Never
computes science; imports only from earlier stages (analyses' result types and helpers)."""
