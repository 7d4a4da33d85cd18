"""What a person takes away from a trained model: figures, decompositions of new images,
HTML reports and multi-seed summaries.

The top of the package graph: it may import model, evaluation and training; nothing below
imports it (the trainer's `finish` reaches it through a local import).
"""
