"""The pieces of `migrate verify`: object listing check, deep re-hash, event drain and compare, report files.

`verify.py` wires them together (`verify_plan`); every other module here does one thing:

  verify.py    verify_plan: load the plan, run the checks below, write the report
  model.py     the result dataclasses (what the JSON report contains)
  problems.py  the line-per-problem listing (`+`/`*`/`-`/`!`/`=`), sorted on disk in SQLite
  objects.py   list each bucket+prefix once into a TEMP table, join with the plan's items
  deep.py      re-download a seeded sample and re-hash it (CRC32C)
  events.py    drain the verification subscription, re-read the source logs, compare in SQL
  report.py    write plans/<name>.verify.json and .verify.md
"""
