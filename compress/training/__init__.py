"""Training: the engine (`engine`), several processes (`distributed`), freeze policies
(`freeze`).
"""
