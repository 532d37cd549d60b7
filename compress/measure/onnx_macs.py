"""MACs and parameters of an ONNX file, by the same convention as compress.measure.macs.

Conv, Gemm and MatMul nodes (and their quantized forms QLinearConv, ConvInteger,
QLinearMatMul, MatMulInteger) count multiply-accumulates for one image: output elements x
the reduction length; a MatMul or Gemm counts when its weight is computed from the file's
initializers (a Linear layer), not when it multiplies two activations (attention). Activations, normalisation, pooling, additions, casts and Q/DQ nodes
are not counted. Shapes come from ONNX shape inference with the batch fixed to 1, so an
FP16 or INT8 file of a model has the same MACs as its float32 file and its torch model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# op type -> (index of the data input, index of the weight input)
_CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Gemm": (0, 1)}
_QUANT_PARAMETER_INPUTS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}


def _load_with_shapes(path: str | Path, input_size: int | None):
    import onnx

    model = onnx.load(str(path))
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    dims[0].ClearField("dim_param")
    dims[0].dim_value = 1
    if input_size is not None:
        for dim in dims[2:4]:
            dim.ClearField("dim_param")
            dim.dim_value = input_size
    del model.graph.value_info[:]  # stale shapes (batch still symbolic) would be kept as is
    _sort_topologically(model.graph)
    inferred = onnx.shape_inference.infer_shapes(model)
    if all(_shape_known(v) for v in inferred.graph.value_info):
        return inferred
    # A shape computed inside the graph (the Reshape of a channel shuffle) stops ONNX's
    # inference; ONNX Runtime's symbolic inference follows it.
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # its own failures: keep what ONNX inferred (the caller names gaps)
        return inferred


def _shape_known(value) -> bool:
    dims = value.type.tensor_type.shape.dim
    return all(d.HasField("dim_value") for d in dims)


def _sort_topologically(graph) -> None:
    """Shape inference visits nodes in file order; the FP16 converter appends its input
    Cast at the end, so order producers before consumers first."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:  # a cycle or a dangling input: leave the rest as it was
            ordered += pending
            break
        for node in ready:
            known.update(node.output)
        ordered += ready
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)


def _shapes(model) -> dict[str, list[int]]:
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for value in list(model.graph.value_info) + list(model.graph.input) + \
            list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    return shapes


def onnx_layer_macs(path: str | Path, input_size: int | None = None) -> dict[str, int]:
    """MACs of every Conv / Gemm / MatMul node for one image, by node name."""
    model = _load_with_shapes(path, input_size)
    shapes = _shapes(model)
    constant = _constant_tensors(model.graph)
    macs: dict[str, int] = {}
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        if node.op_type in _CONV_OPS:
            _, weight = _CONV_OPS[node.op_type]
            out, kernel = shapes.get(node.output[0]), shapes.get(node.input[weight])
            if out is None or kernel is None:
                raise ValueError(f"cannot infer the shapes of {name}: give the input size")
            macs[name] = int(np.prod(out)) * int(np.prod(kernel[1:]))
        elif node.op_type in _MATMUL_OPS and _MATMUL_OPS[node.op_type][1] < len(node.input) \
                and node.input[_MATMUL_OPS[node.op_type][1]] in constant:
            # a layer with weights (a Linear); products of two activations (attention's
            # q @ k) are not layers, as in the torch count
            data, weight = _MATMUL_OPS[node.op_type]
            out, a = shapes.get(node.output[0]), shapes.get(node.input[data])
            if out is None or a is None:
                raise ValueError(f"cannot infer the shapes of {name}: give the input size")
            trans_a = any(att.name == "transA" and att.i for att in node.attribute)
            reduction = a[-2] if trans_a else a[-1]
            macs[name] = int(np.prod(out)) * reduction
    return macs


def _constant_tensors(graph) -> set[str]:
    """Names of the tensors computed from initializers alone (weights, and weights passed
    through DequantizeLinear, Transpose, Cast, ...)."""
    constant = {i.name for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" or (node.input and all(i in constant or i == ""
                                                             for i in node.input)):
            constant.update(node.output)
    return constant


def onnx_macs(path: str | Path, input_size: int | None = None) -> int:
    return sum(onnx_layer_macs(path, input_size).values())


def onnx_params(path: str | Path) -> int:
    """Elements of the model's initializers, without quantization scales and zero points
    (so that an INT8 file counts the same parameters as its float32 model)."""
    import onnx

    model = onnx.load(str(path))
    quant_parameters = {node.input[i] for node in model.graph.node
                        for i in _QUANT_PARAMETER_INPUTS.get(node.op_type, ())
                        if i < len(node.input)}
    constants = {node.output[0] for node in model.graph.node if node.op_type == "Constant"}
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer
               if t.name not in quant_parameters and t.name not in constants
               and len(t.dims) > 0 and not (t.data_type == onnx.TensorProto.INT64))
