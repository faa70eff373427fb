"""netdef: Caffe-style declarative nets in YAML, compiled to PyTorch."""
from .api import Net, compile_info, expand_file, load_graph, load_net, net_state, read_net, summarize
from .errors import NetdefError, Problem

__version__ = "0.1.0"
__all__ = ["Net", "NetdefError", "Problem", "compile_info", "expand_file", "load_graph", "load_net", "net_state",
           "read_net", "summarize"]
