"""Helpers for the Hydra entry points: config checks, instantiation, run bookkeeping."""
