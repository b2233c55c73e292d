"""Software-defined assets, one module per lifecycle stage; the logic lives in llmops/."""
