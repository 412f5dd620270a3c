"""Simulation control (`/_sim/`): the world clock, traffic counters, scripted faults and reset."""
