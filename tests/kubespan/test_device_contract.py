from __future__ import annotations

from pathlib import Path

import pytest

from kubespan.device import Device, MeshDevice
from tests.fakes import FakeDevice, FakeRunner
from tests.kubespan.device_contract import IFACE, MeshDeviceContract
from tests.kubespan.fake_kernel import FakeKernel


class TestFakeDevice(MeshDeviceContract):
    @pytest.fixture
    def device(self, tmp_path: Path) -> MeshDevice:
        return FakeDevice(interface=IFACE)


class TestDevice(MeshDeviceContract):
    @pytest.fixture
    def device(self, tmp_path: Path) -> MeshDevice:
        runner = FakeKernel().install(FakeRunner())
        return Device(IFACE, runner, state_dir=tmp_path, mtu=1420, socket_dir=tmp_path)
