"""Numbered schema migrations (``NNNN_name.sql``), shipped as package data and applied in order."""
