"""Baseline servers the fan-out benchmark compares wirehub with."""
