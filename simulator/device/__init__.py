"""Simulated iPhones and iPads: identity, activation, Setup Assistant and the MDM agent.

Devices are sans-I/O state machines (see DESIGN.md): they yield HTTP requests and consume responses,
so the same device logic runs in-process, over real sockets or inside a Locust user.
"""
