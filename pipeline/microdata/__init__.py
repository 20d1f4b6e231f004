"""Household microdata: the three entity tables and their PolicyEngine-layout HDF5 form."""

from pipeline.microdata.h5 import (
    H5Writer,
    RowBlock,
    blocks,
    read_h5,
    sidecar_of,
    slice_published,
    split_block,
    string_widths,
    whole_file,
    write_h5,
)
from pipeline.microdata.tables import ENTITIES, REQUIRED, Microdata

__all__ = ["ENTITIES", "REQUIRED", "H5Writer", "Microdata", "RowBlock", "blocks", "read_h5",
           "sidecar_of", "slice_published", "split_block", "string_widths", "whole_file",
           "write_h5"]
