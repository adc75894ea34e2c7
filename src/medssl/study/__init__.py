"""Studies: grids of pre-training x fine-tuning runs in a SQLite database, statistics and reports."""
