"""``flowdsl explain``: pictures of what the checker proves, drawn from the IR and the dependency engine.

It may import the front end and the analysis (the same dependency sets the checker proves, never
recomputed another way) and matplotlib for drawing; it does not import torch.
"""
