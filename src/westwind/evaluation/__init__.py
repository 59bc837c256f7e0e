"""The eval stage: its config, the comparison (run), significance. Kept free of imports."""
