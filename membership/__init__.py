"""The pure domain: affiliate events, the registry fold, limits, Talos records and sealing.

Nothing here does I/O: time, randomness and keys come in as arguments.
"""
