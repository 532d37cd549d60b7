"""`compress search`: Optuna studies over the values of a recipe."""
