"""The compute resource: the device a fit runs on, refused by name when it is not there."""

import pytest
import torch
from dagster import build_init_resource_context

from pipeline.core.errors import InputError
from pipeline.fit.device import describe, resolve_device
from resources import ComputeResource

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@no_cuda
def test_cuda_without_a_gpu_names_the_setting_and_what_was_found():
    with pytest.raises(InputError) as info:
        resolve_device("cuda", "--device")
    text = str(info.value)
    assert "field '--device'" in text and "CUDA requested but none was found" in text
    assert f"torch {torch.__version__}" in text and "set --device to cpu" in text
    assert resolve_device("auto", "--device").type == "cpu"
    with pytest.raises(InputError, match="field 'fit.device': unknown device 'tpu'"):
        resolve_device("tpu", "fit.device")


@no_cuda
def test_the_resource_refuses_cuda_before_any_step():
    with pytest.raises(InputError, match=r"field 'compute.device \(CALIBRATION_DEVICE\)': "
                                         "CUDA requested but none was found"):
        ComputeResource(device="cuda", dask="inprocess").setup_for_execution(
            build_init_resource_context())
    ComputeResource(device="auto", dask="inprocess").setup_for_execution(
        build_init_resource_context())


def test_the_fit_says_which_device_it_ran_on():
    assert describe(torch.device("cpu"), 2) == "cpu (2 threads)"
    assert describe(torch.device("cpu"), 1) == "cpu (1 thread)"
    if torch.cuda.is_available():
        assert describe(torch.device("cuda")).startswith("cuda:0 (")
