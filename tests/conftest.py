"""Shared fixtures."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny fits: thread barriers cost more than the work on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
