"""Propagator: pushes consent changes to the processors that must honour them, with receipts."""
