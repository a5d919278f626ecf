"""The ONNX backend: the IR lowered straight to an ONNX model (`export`), one lowering per op
(`ops`, `fused`), with the graph builder, weights and reduced precision beside them."""
