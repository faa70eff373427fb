"""The front end's limits, stated once (the README's *Reliability* section lists them).

Every input file either goes through the front end or stops at a positioned problem; these bounds keep
hostile or broken files (alias bombs, runaway templates, huge repeats) from exhausting time or memory
before that problem can be reported. Each is far above what a real net needs: ResNet-152 expands to
670 layers from a 2 kB file.
"""
MAX_FILE_BYTES = 16 * 2 ** 20  # one YAML file
MAX_NESTING = 64  # mappings and lists inside each other in one YAML document
MAX_NODES = 100_000  # YAML nodes of a document once aliases are expanded (an alias bomb has billions)
MAX_LAYERS = 100_000  # layers of a net after block expansion
MAX_REPEAT = 10_000  # `repeat:` of one block instance
MAX_TEMPLATE_CHARS = 1_000  # one `${...}` expression
MAX_TEMPLATE_STEPS = 10_000  # evaluation steps of one expression
MAX_TEMPLATE_BITS = 4_096  # an integer a template computes (2**4096 is already absurd for a net)
MAX_TEMPLATE_ITEMS = 100_000  # a string or list a template builds
MAX_ELEMENTS = 2 ** 63 - 1  # elements of one blob or parameter: what an int64 can count
