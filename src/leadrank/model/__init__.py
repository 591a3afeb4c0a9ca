"""The LLM side of leadrank: backbones and the three-head ranker."""
