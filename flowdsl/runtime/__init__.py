"""Torch implementations of the layers. Imported only by the compiler (never by parse/check)."""
