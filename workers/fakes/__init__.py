"""Protocol-faithful stand-ins for Apple's and Google's push services.

They speak the real wire protocols over real sockets, so the real client libraries (aioapns,
pyfcm) can be pointed at them by the ``BRIK_APNS_*`` / ``BRIK_FCM_*`` settings. Tests, the
benchmarks in ``loadtests/`` and local demos use them; production never does.
"""
