"""The CPU demo: its tasks and verifier, its teacher endpoint, the tiny student. Kept free of imports."""
