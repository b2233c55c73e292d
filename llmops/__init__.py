"""Domain core of the LLM lifecycle: pure Python, no Dagster import.

Every stage's logic lives here so it can be unit-tested and reused outside Dagster;
`assets/`, `resources/` and `sensors/` are thin adapters around it.
"""

__version__ = "0.1.0"
