"""Shared building blocks: Keras layers and pure tensor ops."""
