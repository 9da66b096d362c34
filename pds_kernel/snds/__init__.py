"""SNDS table schemas (from the public SNDS schema) and the synthetic delivery generator."""
