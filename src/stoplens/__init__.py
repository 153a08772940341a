"""stoplens: train a $STOP kill switch into a causal LM and find out how the model implements it.

Data flows one way: data -> train -> models (load) -> capture -> analyses -> report.
Importing this package has no side effects (no torch import, no environment edits).
"""

__version__ = "0.1.0"
