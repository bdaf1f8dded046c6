"""Latency and energy predictors trained on the farm's dataset (layer 2).

Empty until the predictors issue lands: kernel detection, features, sampling plans,
gradient-boosted kernel models, bundles and the benchmark protocols live here.
"""
