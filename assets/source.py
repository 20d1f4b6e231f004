"""Source stage: real CPS microdata, uprated, and the stratified base sample."""

from dagster import MaterializeResult, MetadataValue, asset

from assets.failures import explains
from assets.metadata import column_schema, file_result, markdown_table
from assets.stages import stage
from pipeline.microdata import Microdata, read_h5, write_h5
from pipeline.microdata.tables import SCHEMAS
from pipeline.source.stratify import stratify
from pipeline.source.taxcalc_cps import load_source_cps
from resources import ProfileResource, StorageResource

STAGE = "source"


def _microdata_metadata(md: Microdata) -> dict:
    hh = md.household
    return {
        "households": len(hh),
        "tax_units": len(md.tax_unit),
        "persons": len(md.person),
        "weighted_households": float(hh["household_weight"].sum()),
        "weighted_persons": float(
            md.person["household_id"].map(hh.set_index("household_id")["household_weight"]).sum()
        ),
        "preview": MetadataValue.md(markdown_table(hh.head(10))),
        **column_schema(SCHEMAS["household"]),
    }


@asset(**stage(STAGE), code_version="2", description="Tax-Calculator's CPS, uprated.")
@explains
def source_cps(storage: StorageResource, profile: ProfileResource) -> MaterializeResult:
    path = storage.layout.source_h5
    md = load_source_cps(profile.load().period)
    write_h5(md, path)
    return file_result(path, _microdata_metadata(md))


@asset(**stage(STAGE), code_version="2", deps=[source_cps],
       description="Stratified ~12K-household base sample (PolicyEngine H5 layout).")
@explains
def stratified_cps(storage: StorageResource, profile: ProfileResource) -> MaterializeResult:
    layout, prof = storage.layout, profile.load()
    md = stratify(read_h5(layout.source_h5), target_households=prof.sample.households,
                  seed=prof.seed, top_agi_quantile=prof.sample.top_agi_quantile)
    write_h5(md, layout.base_h5)
    return file_result(layout.base_h5, _microdata_metadata(md))
