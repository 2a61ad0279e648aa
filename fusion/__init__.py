"""Fusion of purchase and text signals into a calibrated churn risk, tier, reasons and action.

One file per step, in the order a history flows through them:
``inputs`` (read and validate files) → ``text`` (analyse messages once, cached) →
``features`` (per customer, strictly before ``as_of``) → ``model`` (BG/NBD features,
gradient boosting, calibration) → ``tiers`` and ``reasons`` → ``scoring``. ``training``
and ``artifact`` make and keep a model; ``evaluation`` measures one; ``simulation``
builds realistic history files for the benchmark and the demo.
"""
