"""Text to vectors: the Embedder seam, sentence-transformers, offline model resolution, ONNX."""
