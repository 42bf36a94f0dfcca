"""PML's import path for the record-keeping base modules that hold a reducer and/or a distance;
they live in `module_with_records`, next to `ModuleWithRecords`."""

from .module_with_records import (
    ModuleWithRecords,
    ModuleWithRecordsAndDistance,
    ModuleWithRecordsAndReducer,
    ModuleWithRecordsReducerAndDistance,
)

__all__ = [
    "ModuleWithRecords",
    "ModuleWithRecordsAndDistance",
    "ModuleWithRecordsAndReducer",
    "ModuleWithRecordsReducerAndDistance",
]
