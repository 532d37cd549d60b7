"""Recipes: the typed schema (`schema`), reading and validating a file (`loading`), `--set`
paths (`overrides`) and the `search:` block (`search_space`).
"""
