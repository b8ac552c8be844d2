"""Training and data: the training loop (:mod:`.trainer`) and the data sets (:mod:`.data`).

May import the public API, the runtime and torch; the CLI imports it.
"""
