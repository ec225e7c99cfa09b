"""Image loading lives in deepthings.engine.preprocess; these names remain for callers."""

from deepthings.engine.preprocess import describe, load_image as to_rgb_array, to_pil_rgb

__all__ = ["describe", "to_pil_rgb", "to_rgb_array"]
