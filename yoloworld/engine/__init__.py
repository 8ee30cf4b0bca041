"""Training engine: label assignment and the YOLOv8-style detection loss."""
