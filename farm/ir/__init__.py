"""The graph IR and every pass over it: the floor the simulator, predictors and searches stand on.

- :mod:`farm.ir.graph`: :class:`Graph`, :class:`Node`, :class:`TensorInfo` and dtype sizes.
- :mod:`farm.ir.builder`: :class:`IRBuilder`, building graphs directly (search spaces, zoo).
- :mod:`farm.ir.kernels`: kernel classes, kernel forming under fusion rules, dedupe, liveness.
- :mod:`farm.ir.memory`: peak SRAM under the execution order, flash size.
- :mod:`farm.ir.bits`: per-layer weight/activation bit widths.

Pure functions of their inputs; no file formats (see :mod:`farm.formats`) and no devices.
"""

from farm.ir.graph import DTYPE_BYTES, Graph, Node, TensorInfo

__all__ = ["Graph", "Node", "TensorInfo", "DTYPE_BYTES"]
