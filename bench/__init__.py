"""lcsynth's benchmarks: each prints a table and, last, a summary line of ratios against a same-run baseline."""
