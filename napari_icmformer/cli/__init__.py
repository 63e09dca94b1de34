"""Console scripts: icmformer-segment, icmformer-eval, icmformer-train."""
