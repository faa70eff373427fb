"""One check_layer case of tests/test_layers.py: a layer type, its parameters, its input shapes (and which
bottoms are class labels, with how many classes). Kept apart so that tests/layer_cases_<area>.py files can
add cases without importing the test module."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Case:
    type: str
    params: dict = field(default_factory=dict)
    inputs: tuple = ()
    tops: int = 1
    labels: dict = field(default_factory=dict)
    phase: str = "TRAIN"
    id: str = ""
