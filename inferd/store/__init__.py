"""On-disk state: paths, the generation counter and the slot store."""
