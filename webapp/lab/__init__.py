"""Researcher side of the 2AFC site (dashboard, QC, analysis, export, API)."""
