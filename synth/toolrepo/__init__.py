"""The tool repository: one validator for every tool spec, and the importer of real specs."""

from synth.toolrepo.importer import FileCounts, ImportReport, Rejection, SpecFileError, import_specs
from synth.toolrepo.validate import TOOL_NAME, draft_problems, spec_problems

__all__ = [
    "TOOL_NAME",
    "FileCounts",
    "ImportReport",
    "Rejection",
    "SpecFileError",
    "draft_problems",
    "import_specs",
    "spec_problems",
]
