"""graphpush benchmarks: one script per question, ratios measured side by side in one run."""
