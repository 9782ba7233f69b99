"""Fail when site-packages holds a *.pth file we do not know: litellm 1.82.7/1.82.8 shipped a
malicious `litellm_init.pth` that runs at every Python start.

    python .ci/check_pth.py            # this interpreter's site-packages (and the user site)
    python .ci/check_pth.py DIR...     # the given folders instead
"""

from __future__ import annotations

import site
import sys
from pathlib import Path

# .pth files that ordinary installs create: editable installs, setuptools, virtualenv helpers.
KNOWN = ("_editable_impl_loopkit.pth", "_loopkit.pth", "distutils-precedence.pth", "_virtualenv.pth", "__editable__.", "easy-install.pth")


def site_dirs() -> list[Path]:
    return [Path(p) for p in {*site.getsitepackages(), site.getusersitepackages()}]


def unknown_pth(folders: list[Path]) -> list[Path]:
    found = []
    for folder in folders:
        for pth in sorted(folder.glob("*.pth")) if folder.is_dir() else []:
            if not pth.name.startswith(KNOWN):
                found.append(pth)
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folders = [Path(a) for a in args] if args else site_dirs()
    missing = [f for f in folders if args and not f.is_dir()]
    for folder in missing:
        print(f"not a folder: {folder}", file=sys.stderr)
    unknown = unknown_pth(folders)
    for pth in unknown:
        print(f"unexpected .pth file: {pth} (it runs code at every Python start; inspect it)", file=sys.stderr)
    return 1 if unknown or missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
