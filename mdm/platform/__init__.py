"""What every party runs on, beside the wire formats: the SQLite store, the world clock, Flask helpers.

``mdm.protocol`` holds pure codecs (no I/O, no Flask, no threads); anything that keeps state, reads
a request or serves one lives here, and every party (Apple's, the vendor's, the simulation's) may
import it.
"""
