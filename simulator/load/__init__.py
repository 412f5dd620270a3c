"""Load at fleet scale: thousands of simulated devices, sync storms, steady check-ins, Locust users.

Every device here is the same sans-I/O :class:`~simulator.device.machine.Device` the tests use; only
the driver changes (DESIGN.md rule 5): :class:`~simulator.load.drivers.AsyncHTTPDriver` runs
thousands of them on one asyncio loop, :mod:`simulator.load.locust_driver` inside Locust users.
Preparation (profile, assignment, identities) goes over HTTP, so a run can target any served world.
"""
