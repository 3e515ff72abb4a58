"""The integer that tells an elementwise loss kernel which terms to compute, shared by cpu.py and gpu.py
(and mirrored by losses::Code in losses.cu): mse, mse_half and quadratic share the (y - t)^2 terms and
differ only in the factor in front."""

SQUARED, CATEGORICAL, BINARY, BINARY_LOGITS, MAPE = range(5)


def kernel_code(name: str, params: dict) -> int:
    if name in ("mse", "mse_half", "quadratic"):
        return SQUARED
    if name == "categorical_crossentropy":
        return CATEGORICAL
    if name == "binary_crossentropy":
        return BINARY_LOGITS if params["from_logits"] else BINARY
    if name == "mape":
        return MAPE
    raise ValueError(f"loss {name!r} has no elementwise kernel")
