"""From passages to a cited answer: extractive selection, LLM generation, citation checks."""
