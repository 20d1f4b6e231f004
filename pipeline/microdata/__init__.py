"""Household microdata: the three entity tables and their PolicyEngine-layout HDF5 form."""

from pipeline.microdata.h5 import read_h5, write_h5
from pipeline.microdata.tables import ENTITIES, REQUIRED, Microdata

__all__ = ["ENTITIES", "REQUIRED", "Microdata", "read_h5", "write_h5"]
