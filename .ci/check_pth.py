"""Fail when site-packages holds a *.pth file we do not know: litellm 1.82.7/1.82.8 shipped a
malicious `litellm_init.pth` that runs at every Python start."""

from __future__ import annotations

import site
import sys
from pathlib import Path

# .pth files that ordinary installs create: editable installs, setuptools, virtualenv helpers.
KNOWN = ("_editable_impl_loopkit.pth", "_loopkit.pth", "distutils-precedence.pth", "_virtualenv.pth", "__editable__.", "easy-install.pth")


def main() -> int:
    unknown = []
    for folder in {*site.getsitepackages(), site.getusersitepackages()}:
        for pth in Path(folder).glob("*.pth") if Path(folder).is_dir() else []:
            if not pth.name.startswith(KNOWN):
                unknown.append(pth)
    for pth in unknown:
        print(f"unexpected .pth file: {pth} (it runs code at every Python start; inspect it)", file=sys.stderr)
    return 1 if unknown else 0


if __name__ == "__main__":
    raise SystemExit(main())
