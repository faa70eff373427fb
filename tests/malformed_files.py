"""Files made to be malformed in one precise way, for the tests of the readers that must refuse them: the
fuzzer's own (tools/fuzz.py), so that a test and the fuzz cases make the same file."""
import importlib.util
import sys

from conftest import ROOT


def fuzz_tool():
    """tools/fuzz.py as a module (it is a script, not part of the package), loaded once."""
    if "netdef_fuzz" not in sys.modules:
        spec = importlib.util.spec_from_file_location("netdef_fuzz", ROOT / "tools" / "fuzz.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["netdef_fuzz"] = module  # before running it: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["netdef_fuzz"]


png_claiming = fuzz_tool().png_claiming
