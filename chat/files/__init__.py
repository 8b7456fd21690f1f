"""Uploaded files: where their bytes live (`storage`), what they are (`sniff`) and what a
reader gets out of them (`extract`: text, PDF pages, images resized for a model)."""
