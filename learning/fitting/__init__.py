"""Fitting DPL weights on cached per-channel distance vectors."""
