"""Model surgery that stages and analyses use: pruning groups and importance, low-rank
decomposition, block removal, BatchNorm re-estimation, ONNX export. No measuring here.
"""
