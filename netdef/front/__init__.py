"""The front end: load -> validate -> expand -> graph -> infer, all without torch.

Each stage is one module and takes the previous stage's value; `netdef.api.Net` runs them once per file.
"""
