"""The consistency meter: per region, the fraction of reads still fresh T s after a write."""
