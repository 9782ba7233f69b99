"""Make URL slugs. The bug: runs of spaces become runs of dashes."""


def slugify(title: str) -> str:
    return title.strip().lower().replace(" ", "-")
