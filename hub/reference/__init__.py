"""Reference data shipped with the hub: working calendar, agencies, procedures, portal codes."""

from hub.reference.loader import DEFAULT_ROOT, ReferenceData, load_reference
from hub.reference.models import (
    Agency,
    AgencyDirectory,
    Procedure,
    ProcedureStep,
    ReferenceDataError,
    UnknownAgencyError,
)

__all__ = [
    "DEFAULT_ROOT",
    "Agency",
    "AgencyDirectory",
    "Procedure",
    "ProcedureStep",
    "ReferenceData",
    "ReferenceDataError",
    "UnknownAgencyError",
    "load_reference",
]
