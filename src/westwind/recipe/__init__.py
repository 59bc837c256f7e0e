"""Recipes: reading, validation (schema, preflight, launch check), forking, the stages' CLI help. Kept free of imports."""
