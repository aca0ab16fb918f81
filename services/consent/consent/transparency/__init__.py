"""The transparency log over the ledger: sequencing, signed checkpoints, proofs, receipts."""
