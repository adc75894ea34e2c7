"""Detection metric names, importable without MONAI (the task registry and the CLI read them at start-up)."""

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # false positives per image: the LUNA16 FROC points
METRIC_NAMES = ("map_iou10", "map_iou50", "map_iou10_50", "froc_cpm", *(f"sensitivity_at_{r:g}_fp" for r in FP_RATES))
