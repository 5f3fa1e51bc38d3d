"""A project's data out: whole-project archives, per-user export and erase, and import.

- :mod:`controlplane.exports.records` — one row as one JSON record, the same shape in every
  export (an archive's NDJSON lines, a user's export);
- :mod:`controlplane.exports.user_data` — one end user's data, exported or erased;
- :mod:`controlplane.exports.archive` — writing a project's archive (the worker's job);
- :mod:`controlplane.exports.reading` — loading an archive into a project (``brik-cloud import``).

docs/export.md tells tenants what is in an export and what an erase keeps.
"""
