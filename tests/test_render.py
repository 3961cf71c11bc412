"""CLI rendering: data is printed verbatim, never read as rich markup."""

from __future__ import annotations

import pytest
from rich.errors import MarkupError

from migrate.cli import render


def test_plain_prints_bracketed_data_verbatim(capsys):
    render.plain("plans at /srv/[/weird]/[bold]x")
    assert "plans at /srv/[/weird]/[bold]x" in capsys.readouterr().out


def test_info_reads_markup_so_data_must_go_through_plain():
    with pytest.raises(MarkupError):
        render.info("plans at /srv/[/weird]")


def test_errors_escape_what_they_name(capsys):
    render.error("cannot read /srv/[/x]")
    assert "cannot read /srv/[/x]" in capsys.readouterr().err


def test_table_cells_show_counts_with_separators_and_names_verbatim(capsys):
    render.table("t", ["name", "files"], [("[b]x[/b]", 1234567), ("none", None)], right=["files"])
    out = capsys.readouterr().out
    assert "1,234,567" in out and "[b]x[/b]" in out and "None" not in out
