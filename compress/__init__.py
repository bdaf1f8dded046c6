"""Structured pruning and mixed-precision quantization driven by predicted cost (layer 3).

Empty for now; lands with the compression issue.
"""
