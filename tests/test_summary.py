"""What `netdef summary` reports: `--batch`."""
from __future__ import annotations

import json
import re

import pytest


def test_summary_batch_changes_shapes_and_memory_not_per_sample_costs(netdef_subprocess):
    runs = {}
    for batch in ("2", "8"):
        result = netdef_subprocess("summary", "nets/lenet.yaml", "--batch", batch, "--json")
        assert result.returncode == 0, result.stderr
        runs[batch] = json.loads(result.stdout)
    assert runs["2"]["inputs"] == {"data": [2, 1, 28, 28], "label": [2]}
    assert runs["8"]["layers"][1]["shapes"] == [[8, 20, 24, 24]]
    assert runs["8"]["activation_memory"] > runs["2"]["activation_memory"]
    assert runs["2"]["total_macs"] == runs["8"]["total_macs"] == 2_293_000
    table = netdef_subprocess("summary", "nets/lenet.yaml", "--batch", "3", "--phase", "TEST").stdout
    assert re.search(r"^conv1\s+Convolution\s+3x20x24x24\s", table, re.M)


@pytest.mark.parametrize("value, message", [("0", "--batch must be at least 1"), ("two", "invalid int value")])
def test_summary_bad_batch_is_a_clean_error(netdef_subprocess, value, message):
    result = netdef_subprocess("summary", "nets/lenet.yaml", "--batch", value)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
