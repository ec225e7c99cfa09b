"""Baselines DeepThings is compared against: MoDNN (Biased One-Dimensional Partition)."""

from deepthings.baselines.modnn import ModnnPlan, bodp_rows, modnn_plan

__all__ = ["ModnnPlan", "bodp_rows", "modnn_plan"]
