"""Sensors and automation: new documents now; data/embedding drift with the evaluation stage."""
