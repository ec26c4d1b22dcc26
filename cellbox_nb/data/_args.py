"""Checks for scalar arguments of the data layer; each failure raises ConfigError naming the argument."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import ConfigError


def check_int(name: str, value, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int, or raise ConfigError if it is not an integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_float(name: str, value, *, minimum: float | None = None, strict: bool = False) -> float:
    """Return ``value`` as a finite float, or raise ConfigError.

    With ``minimum`` the value must be >= minimum (> minimum when ``strict``).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}")
    if minimum is not None:
        if strict and value <= minimum:
            raise ConfigError(f"{name} must be > {minimum:g}, got {value:g}")
        if not strict and value < minimum:
            raise ConfigError(f"{name} must be >= {minimum:g}, got {value:g}")
    return value


def seed_sequence(seed, name: str = "seed") -> np.random.SeedSequence:
    """Turn a user seed (a non-negative int, or a SeedSequence) into a ``np.random.SeedSequence``."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(check_int(name, seed, minimum=0))
