"""netdef: Caffe-style declarative nets in YAML, compiled to PyTorch."""
from .api import compile_info, expand_file, load_graph, load_net, net_state, summarize
from .errors import NetdefError, Problem

__version__ = "0.1.0"
__all__ = ["NetdefError", "Problem", "compile_info", "expand_file", "load_graph", "load_net", "net_state",
           "summarize"]
