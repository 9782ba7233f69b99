"""A tiny calculator whose tests pass."""


def add(a: float, b: float) -> float:
    return a + b


def mean(values: list[float]) -> float:
    return sum(values) / len(values)
