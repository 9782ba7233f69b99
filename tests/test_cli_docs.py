"""docs/cli.md is generated from every command's --help and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from loopkit.cli import docs

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_docs_cli_md_is_the_help_of_every_command():
    expected = docs.render()
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert current == expected, "docs/cli.md is stale: run `.venv/bin/python -m loopkit.cli.docs` and commit the result"


def test_every_command_has_a_section():
    text = docs.render()
    for name in docs.command_names():
        assert f"\n## loopkit {name}\n" in text
    for name in ("run", "check", "runs", "show", "diff", "cost", "review", "resume"):
        assert name in docs.command_names()


def test_the_check_mode_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "cli.md"
    stale.write_text("# old\n", encoding="utf-8")
    assert docs.main(["--check", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    assert docs.main([str(stale)]) == 0 and docs.main(["--check", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == docs.render()
