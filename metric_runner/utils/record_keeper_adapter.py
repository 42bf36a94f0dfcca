"""record-keeper 0.9.32 (the CSV + SQLite logger that PML's logging presets use), fixed where it
breaks with numpy 2 and Python's sqlite3. Only the broken steps are overridden; the package
itself does the work.

What breaks, and why:

- numpy integer scalars and 0-d arrays pass record-keeper's `is_primitive` check but its
  `convert_to_scalar` returns them unchanged; numpy 2 exposes them through the buffer protocol,
  so sqlite3 stores them as raw BLOBs (b'\\x03\\x00...') and SQL comparisons (MAX, WHERE epoch=)
  on those columns stop working. `np.float32` and `np.bool_` fail `is_primitive` and are silently
  dropped, and a float32 array's `list(v)` holds numpy scalars that neither sqlite3 nor json
  accept. Fix: numpy values become Python numbers (arrays: lists of them) first.
- `save_lists=True` with a list-valued series raises KeyError('<name>_list') inside
  `DBManager.write` (it renames the column, then looks the value up under the new name). Fix:
  list series reach the database already named `<name>_list` and JSON-encoded, as text.
"""

import json

import numpy as np
import record_keeper
from record_keeper.db_utils import DBManager
from record_keeper.utils import hash_if_too_long  # noqa: F401 (the hooks query tables by it)


def plain_value(value):
    """A numpy scalar as the Python number it holds, an array as a (nested) list of them;
    anything else unchanged."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class JSONListDBManager(DBManager):
    """Writes list-valued series as JSON text columns named `<name>_list`."""

    def write(self, table_name, dict_of_lists, experiment_name=None):
        columns = {}
        for name, values in dict_of_lists.items():
            if any(isinstance(v, list) for v in values):
                columns[f"{name}_list"] = [None if v is None else json.dumps(v) for v in values]
            else:
                columns[name] = values
        super().write(table_name, columns, experiment_name=experiment_name)


class RecordWriter(record_keeper.RecordWriter):
    def __init__(self, folder, global_db_path=None, **kwargs):
        super().__init__(folder, global_db_path=global_db_path, **kwargs)
        self.local_db = JSONListDBManager(self.local_db.db_path, is_global=False)
        if self.global_db is not None:
            self.global_db = JSONListDBManager(global_db_path, is_global=True)

    def append(self, group_name, series_name, input_val, iteration):
        super().append(group_name, series_name, plain_value(input_val), plain_value(iteration))


class RecordKeeper(record_keeper.RecordKeeper):
    def update_records(self, record_these, global_iteration, **kwargs):
        # record-keeper recurses through this method, so every level of the dict is converted.
        record_these = {name: plain_value(value) for name, value in record_these.items()}
        super().update_records(record_these, global_iteration, **kwargs)
