"""Intune-like web pages for the controller: tokens, enrollment profiles, serial numbers, simulated devices.

The pages are a client of the controller's Graph API over HTTP (never of its Python objects), so they
work the same against our controller in process, behind a real socket, or as a demo of any Graph-shaped
service. :func:`mdm.dashboard.http.create_blueprint` is the entry point; :mod:`.graph` makes the
Graph calls and :mod:`.views` words the replies (whether Sync may be pressed is the controller's answer).
"""
