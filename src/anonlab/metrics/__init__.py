"""Matching detections to ground truth and the metrics built on it."""
