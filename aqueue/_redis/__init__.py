"""Everything that knows how aqueue lays its data out in Redis."""
