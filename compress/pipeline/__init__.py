"""The pipeline: the loop over a recipe's stages (`loop`), the one measurer (`measurer`),
the run folder (`runstore`) and the report (`report`).
"""
