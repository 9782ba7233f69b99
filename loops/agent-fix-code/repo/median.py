def median(values):
    """Return the median of a non-empty sequence of numbers."""
    values.sort()
    return values[len(values) // 2]
